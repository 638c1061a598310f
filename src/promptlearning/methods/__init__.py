"""Methods: ways to turn a language model into a predictor, all with ``fit`` / ``predict`` / ``evaluate``.

Prompt classification (zero-shot, in-context learning) and chain-of-thought are methods; calibration,
ensembles over demonstration orderings and self-consistency wrap a method and are methods themselves.
"""

from promptlearning.methods.base import Evaluation, Method, Prediction
from promptlearning.methods.calibration import Calibrated
from promptlearning.methods.classifier import METHODS, OrderingEnsemble, PromptClassifier
from promptlearning.methods.cot import ChainOfThought, CoTEvaluation, SelfConsistency, Solution

__all__ = [
    "METHODS",
    "Calibrated",
    "ChainOfThought",
    "CoTEvaluation",
    "Evaluation",
    "Method",
    "OrderingEnsemble",
    "Prediction",
    "PromptClassifier",
    "SelfConsistency",
    "Solution",
]
