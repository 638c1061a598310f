"""Errors raised by promptlearning.

Every error a user can cause derives from :class:`PromptLearningError`; the CLI prints its
message and exits with status 2 instead of showing a traceback from deep inside a library.
"""

from __future__ import annotations


class PromptLearningError(Exception):
    """Base class of all errors caused by input, configuration or the environment."""


class ModelNotFoundError(PromptLearningError):
    """A model name or path that resolves to nothing loadable."""


class ChecksumError(PromptLearningError):
    """A downloaded or unpacked file whose sha256 differs from the pinned one."""


class CorruptModelError(PromptLearningError):
    """Model files that exist but cannot be read (truncated, wrong format, half-written)."""


class PromptTooLongError(PromptLearningError):
    """A prompt that does not fit the model's context window."""


class UnsupportedOperationError(PromptLearningError):
    """An operation the chosen model or backend cannot do (e.g. ``embed`` on a causal LM)."""


class BackendNotFoundError(PromptLearningError):
    """An unknown backend name."""


class TaskConfigError(PromptLearningError):
    """A task file that is not valid YAML or does not fit the schema (or a run it cannot resume)."""


class EmptyDataError(PromptLearningError):
    """A dataset (or split) with no examples."""
