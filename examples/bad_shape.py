"""A model with a shape error, for the CLI's error tests:

    graphc dump examples/bad_shape.py:model
    graphc: error: matmul: inner dimensions differ: (N, 4) @ (5, 3) (4 != 5) (at examples/bad_shape.py:15)
"""

import graphc as gc


def model():
    x = gc.input("x", (None, 4))
    t = gc.input("t", (None, 3))
    W = gc.parameter("W", (5, 3))
    # x has 4 features but W expects 5
    y = gc.matmul(x, W)
    return gc.mse(y, t)
