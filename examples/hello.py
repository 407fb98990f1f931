"""A Python-source UDF: `tilefn exec examples/hello.py --arg 5` prints the first squares."""

import numpy as np


def squares(n):
    return np.arange(n) ** 2
