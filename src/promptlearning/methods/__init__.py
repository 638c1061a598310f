"""Methods: ways to turn a language model into a predictor (zero-shot, in-context learning,
chain-of-thought with self-consistency)."""

from promptlearning.methods.classifier import METHODS, Prediction, PromptClassifier
from promptlearning.methods.cot import ChainOfThought, CoTEvaluation, Solution

__all__ = ["METHODS", "ChainOfThought", "CoTEvaluation", "Prediction", "PromptClassifier", "Solution"]
