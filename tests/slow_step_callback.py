"""Test-only callback (imported by class path from a subprocess): slows each training step so a test can kill mid-epoch."""

import time

import pytorch_lightning as pl


class SlowStep(pl.Callback):
    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        time.sleep(self.seconds)
