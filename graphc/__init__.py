"""graphc: a static-graph compiler for feedforward neural networks.

Declare a network symbolically, and graphc derives the backward pass, fuses
the whole training graph and runs each training step as one native call.
This module only re-exports the public API.
"""

__version__ = "0.1.0"

from graphc import data, optim  # noqa: E402
from graphc.errors import (  # noqa: E402
    CacheError,
    CompileError,
    DataError,
    FeedError,
    GradError,
    GraphcError,
    GraphError,
    ModelFileError,
    NumericsError,
    ShapeError,
    VerifyError,
)
from graphc.frontends import layers  # noqa: E402
from graphc.frontends.api import compile, function  # noqa: E402
from graphc.frontends.layers import Sequential  # noqa: E402
from graphc.frontends.spec import load_spec  # noqa: E402
from graphc.frontends.symbolic import (  # noqa: E402
    Tensor,
    activation,
    add,
    binary_cross_entropy,
    constant,
    dense,
    elu,
    grad,
    identity,
    input,
    l2,
    leaky_relu,
    log_softmax,
    mae,
    matmul,
    mean,
    mse,
    mul,
    neg,
    parameter,
    prelu,
    quantile,
    relu,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    softplus,
    sub,
    sum,
    tanh,
    transpose,
)
from graphc.io import load_program as load  # noqa: E402

__all__ = [
    "CacheError", "CompileError", "DataError", "FeedError", "GradError", "GraphError",
    "GraphcError", "ModelFileError", "NumericsError", "ShapeError", "Tensor", "VerifyError",
    "activation", "add", "data", "load", "binary_cross_entropy", "compile", "constant", "dense", "elu",
    "function", "grad", "identity", "input", "l2", "leaky_relu", "log_softmax", "mae",
    "matmul", "mean", "mse", "mul", "neg", "optim", "parameter", "prelu", "quantile", "relu",
    "sigmoid", "softmax", "softmax_cross_entropy", "softplus", "sub", "sum", "tanh",
    "transpose",
]
__all__ += ["Sequential", "layers", "load_spec"]
