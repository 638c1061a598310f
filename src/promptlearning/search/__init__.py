"""Automatic prompt search for classification tasks: label words (LM-BFF), templates (pattern
families and APE instructions, ensembled) and demonstrations (bootstrap + random search), all
scored on a dev split through one cache of (prompt, word) scores."""

from promptlearning.search.run import Candidate, SearchResult, SearchSettings, search, write_search
from promptlearning.search.scoring import ScoreCache

__all__ = ["Candidate", "ScoreCache", "SearchResult", "SearchSettings", "search", "write_search"]
