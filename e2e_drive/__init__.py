"""e2e-drive: end-to-end steering models, from driving log to edge artifact.

Importing the package registers every Keras layer the project puts into a model (``custom_layers`` and
``data_tools.frame_preprocess.FramePreprocess``), so ``keras.saving.load_model(path)`` loads any ``.keras``
file e2e-drive writes.
"""

import custom_layers  # noqa: F401  (registers Maxout, PReLU, ELU, RReLU, APL, ReferenceConv2D)
import data_tools.frame_preprocess  # noqa: F401  (registers FramePreprocess)

__version__ = "0.1.0"
