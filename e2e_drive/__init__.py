"""e2e-drive: end-to-end steering models, from driving log to edge artifact."""

__version__ = "0.1.0"
