"""Exceptions and warnings raised by the fusion mathematics.

Hierarchy::

    SwarmGPError (ValueError)
    └── FusionError
        ├── ShapeError            an array has the wrong shape, dtype or dimension
        ├── NonFiniteError        an array holds NaN or infinite values
        ├── NotPositiveDefinite   a precision matrix is not symmetric positive definite
        ├── IncompatibleEncoding  two summaries or a message use different common encodings
        └── EmptyBatchError       a batch with no observations

    NumericalWarning (RuntimeWarning)   jitter was added, or the importance weights degenerated

Every error says what was expected and what arrived. Raising one of these never leaves
a half-updated state behind: callers validate first, then mutate.
"""

from __future__ import annotations

__all__ = [
    "EmptyBatchError",
    "FusionError",
    "IncompatibleEncoding",
    "NonFiniteError",
    "NotPositiveDefinite",
    "NumericalWarning",
    "ShapeError",
    "SwarmGPError",
]


class SwarmGPError(ValueError):
    """Base class of every error swarmgp raises for bad input."""


class FusionError(SwarmGPError):
    """Base class of the errors of the fusion mathematics."""


class ShapeError(FusionError):
    """An array has the wrong shape, dtype or number of dimensions."""


class NonFiniteError(FusionError):
    """An array holds NaN or infinite values."""


class NotPositiveDefinite(FusionError):
    """A matrix that must be symmetric positive definite is not."""


class IncompatibleEncoding(FusionError):
    """Two summaries (or a message and an agent) use different common encodings."""


class EmptyBatchError(FusionError):
    """A batch holds no observations."""


class NumericalWarning(RuntimeWarning):
    """Numerical trouble that was handled (jitter added, weights degenerate)."""
