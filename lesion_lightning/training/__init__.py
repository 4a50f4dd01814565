"""Training: LightningModules (tasks), optimiser recipes, the run folder and the LightningCLI front end."""

from lesion_lightning.training.task import SegmentationTask, lesion_probabilities

__all__ = ["SegmentationTask", "lesion_probabilities"]
