"""Methods: ways to turn a language model into a predictor (zero-shot, in-context learning …)."""

from promptlearning.methods.classifier import METHODS, Prediction, PromptClassifier

__all__ = ["METHODS", "Prediction", "PromptClassifier"]
