"""Errors and warnings of the data layer: every one names the file it is about."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem with one file (or folder) of a dataset; `file` and `problem` are kept for reports."""

    def __init__(self, file: str | Path, problem: str) -> None:
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


class ImageConversionWarning(UserWarning):
    """An image was converted on load (grayscale, RGBA, 16-bit, palette): usable, but worth knowing."""
