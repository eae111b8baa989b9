"""numbadeconv: TensorFlow-exact 2-D convolution and its transpose on the CPU, with Numba.

>>> import numpy as np, numbadeconv as nd
>>> x = np.ones((1, 5, 5, 3), np.float32)
>>> y = nd.conv2d(x, np.ones((3, 3, 3, 1), np.float32), strides=2, padding="SAME")
>>> nd.conv2d_transpose(y, np.ones((3, 3, 3, 1), np.float32), x.shape, strides=2).shape
(1, 5, 5, 3)
"""

from . import functional
from ._warmup import warmup
from .api import conv2d, conv2d_backprop_filter, conv2d_backprop_input, conv2d_transpose
from .sizes import conv_output_size, transpose_output_sizes

__version__ = "0.1.0"

__all__ = [
    "conv2d",
    "conv2d_backprop_filter",
    "conv2d_backprop_input",
    "conv2d_transpose",
    "conv_output_size",
    "functional",
    "transpose_output_sizes",
    "warmup",
]
