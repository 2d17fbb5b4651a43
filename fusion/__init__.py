"""swarmgp.fusion: the COOL-GP mathematics as pure float64 functions on arrays."""

from .encoding import Encoding, EncodingSpec, make_encoding, unit_se_kernel
from .errors import (
    EmptyBatchError,
    FusionError,
    IncompatibleEncoding,
    NonFiniteError,
    NotPositiveDefinite,
    NumericalWarning,
    ShapeError,
    SwarmGPError,
)
from .hyper import Hyperparameters
from .summary import Moments, Summary, combine, fuse, prior_summary, subtract

__all__ = [
    "EmptyBatchError",
    "Encoding",
    "EncodingSpec",
    "FusionError",
    "Hyperparameters",
    "IncompatibleEncoding",
    "Moments",
    "NonFiniteError",
    "NotPositiveDefinite",
    "NumericalWarning",
    "ShapeError",
    "Summary",
    "SwarmGPError",
    "combine",
    "fuse",
    "make_encoding",
    "prior_summary",
    "subtract",
    "unit_se_kernel",
]
