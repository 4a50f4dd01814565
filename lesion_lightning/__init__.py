"""lesion-lightning: train, evaluate, compare and reproduce lightweight skin-lesion segmentation models."""

__version__ = "0.1.0"
