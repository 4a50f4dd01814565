"""The evaluation stage: score predicted masks against ground truth (`folders`), and score a trained model on
other datasets without retraining (`cross_dataset`, its jobs files `cross_jobs`, its outputs `cross_report`).

Every score comes from `lesion_lightning.metrics.SegmentationMetrics`, the code training reports with.
Modules are imported where used, so that importing this package stays cheap.
"""
