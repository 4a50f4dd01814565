"""Data layer: dataset readers, decoding/validation, splits, cache, augmentation and the DataModule."""
