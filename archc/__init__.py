"""archc: one YAML spec for a CNN, readable PyTorch and Keras code out."""

__version__ = "0.1.0"
