"""Lightning callbacks of lesion-lightning (complexity report, prediction grids, training curves,
progressive resizing). EMA, clipping, accumulation, AMP and checkpointing are Lightning built-ins."""

from lesion_lightning.callbacks.complexity import ComplexityCallback
from lesion_lightning.callbacks.prediction_grid import PredictionGridCallback
from lesion_lightning.callbacks.progressive_resize import ProgressiveResizeCallback
from lesion_lightning.callbacks.training_curves import TrainingCurvesCallback

__all__ = ["ComplexityCallback", "PredictionGridCallback", "ProgressiveResizeCallback", "TrainingCurvesCallback"]
