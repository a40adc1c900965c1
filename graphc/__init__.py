"""graphc: a static-graph compiler for feedforward neural networks."""

__version__ = "0.1.0"
