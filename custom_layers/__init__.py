"""Custom Keras 3 layers: Maxout, PReLU, ELU, RReLU, APL and a from-scratch ReferenceConv2D.

``custom_layers.reference`` is a NumPy float64 oracle (convolution forward and
backward, max pooling) that the tests hold the layers against.
"""

from custom_layers.apl import APL
from custom_layers.elu import ELU
from custom_layers.maxout import Maxout
from custom_layers.prelu import PReLU
from custom_layers.reference_conv2d import ReferenceConv2D
from custom_layers.rrelu import RReLU

__all__ = ["APL", "ELU", "Maxout", "PReLU", "RReLU", "ReferenceConv2D"]
