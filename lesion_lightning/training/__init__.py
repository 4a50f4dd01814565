"""Training: LightningModules (tasks), optimiser recipes, the run folder and the LightningCLI front end."""

from lesion_lightning.models.lesion_head import lesion_probabilities
from lesion_lightning.training.task import EpochResult, LesionSegmentationModule, SegmentationTask

__all__ = ["EpochResult", "LesionSegmentationModule", "SegmentationTask", "lesion_probabilities"]
