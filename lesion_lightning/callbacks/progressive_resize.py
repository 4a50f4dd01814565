"""ProgressiveResizeCallback: change the training image size on an epoch schedule (MedLiteNet's
size-increment training) by asking the DataModule to rebuild its train transform.

When a size change takes effect, given Lightning 2.6's fit loop (loops/fit_loop.py,
loops/training_epoch_loop.py):

* first epoch of a fit: `FitLoop.setup_data()` creates the train DataLoader *and its iterator*
  (`iter(data_fetcher)`) before `on_train_start` and `on_train_epoch_start`; with `num_workers > 0`
  the workers start there with a copy of the dataset. So the first epoch's size is set in
  `on_fit_start` (after `DataModule.setup`, before `setup_data`). On resume the loops are restored
  only after `on_fit_start`, so the resumed epoch is read from the checkpoint in `on_load_checkpoint`.
* later epochs: `TrainingEpochLoop.on_run_start` calls `iter()` again *after* `on_train_epoch_start`,
  which starts fresh workers when `persistent_workers=False` (the DataModule's default). The next
  epoch's size is set already at the end of the previous epoch (`on_train_epoch_end`), which also
  covers `reload_dataloaders_every_n_epochs`, whose new DataLoader is built and iterated before
  `on_train_epoch_start`; `on_train_epoch_start` re-applies it (a no-op unless something changed it).
* `persistent_workers=True` keeps the workers' dataset copies for the whole fit: a change only
  reaches them with `reload_dataloaders_every_n_epochs=1` (a new DataLoader, new workers, built
  after `on_train_epoch_end`). The callback refuses to run with persistent workers otherwise.

Every rank changes its own DataModule, so DDP works as long as all ranks share the schedule.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from lesion_lightning.data.sizes import parse_size


class ProgressiveResizeCallback(pl.Callback):
    """Train at `schedule[e]` from epoch `e` on, e.g. `{0: 256, 100: 384, 200: 512}`.

    Epochs before the first scheduled one use the DataModule's `image_size`. Validation and test keep
    the DataModule's `image_size`. The DataModule must provide `set_train_image_size(size)`.
    The size in use is logged as `train/image_size` (height) each epoch.

    Args:
        schedule: epoch -> training size (an int for square images, or [height, width]).
    """

    def __init__(self, schedule: dict[int, int | list[int]]) -> None:
        if not isinstance(schedule, Mapping) or not schedule:
            raise ValueError(f"ProgressiveResizeCallback.schedule: expected a non-empty {{epoch: size}} mapping, "
                             f"got {schedule!r}")
        parsed: dict[int, tuple[int, int]] = {}
        for epoch, size in schedule.items():
            try:
                e = int(epoch)
            except (TypeError, ValueError):
                raise ValueError(f"ProgressiveResizeCallback.schedule: epoch {epoch!r} is not an int") from None
            if e < 0:
                raise ValueError(f"ProgressiveResizeCallback.schedule: epoch {epoch!r} is negative")
            parsed[e] = parse_size(size, f"ProgressiveResizeCallback.schedule[{epoch!r}]")
        self.schedule = dict(sorted(parsed.items()))
        self._base: tuple[int, int] | None = None
        self._applied: tuple[int, int] | None = None
        self._resume_epoch: int | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(schedule=self.schedule)

    def size_for_epoch(self, epoch: int) -> tuple[int, int] | None:
        """The scheduled size for `epoch` (None before the first scheduled epoch)."""
        size = None
        for e, s in self.schedule.items():
            if e <= epoch:
                size = s
        return size

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _datamodule(trainer: pl.Trainer) -> Any:
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not callable(getattr(dm, "set_train_image_size", None)):
            raise ValueError("ProgressiveResizeCallback needs a LightningDataModule with a "
                             f"set_train_image_size(size) method, got {type(dm).__name__}")
        return dm

    def _target(self, epoch: int) -> tuple[int, int]:
        size = self.size_for_epoch(epoch)
        if size is not None:
            return size
        assert self._base is not None
        return self._base

    def _apply(self, trainer: pl.Trainer, size: tuple[int, int]) -> None:
        if size != self._applied:
            self._datamodule(trainer).set_train_image_size(size)
            self._applied = size

    @staticmethod
    def _train_loaders(trainer: pl.Trainer) -> list[DataLoader]:
        loaders = trainer.train_dataloader
        if isinstance(loaders, DataLoader):
            return [loaders]
        if isinstance(loaders, Mapping):
            loaders = list(loaders.values())
        if isinstance(loaders, (list, tuple)):
            return [dl for dl in loaders if isinstance(dl, DataLoader)]
        return []

    # -- hooks -----------------------------------------------------------------------------------
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # Lightning resumes at epoch_progress.current.processed (FitLoop.on_run_start), restored after on_fit_start.
        try:
            self._resume_epoch = int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
        except (KeyError, TypeError, ValueError):
            self._resume_epoch = None
        if self._base is not None and self._resume_epoch is not None:  # strategies that restore after setup
            self._apply(trainer, self._target(self._resume_epoch))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = self._datamodule(trainer)
        base = dm.image_size
        self._base = parse_size(base if isinstance(base, int) else tuple(base), "datamodule.image_size")
        self._applied = None
        epoch = self._resume_epoch if self._resume_epoch is not None else trainer.current_epoch
        self._apply(trainer, self._target(epoch))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = self._train_loaders(trainer)
        later_change = any(e > trainer.current_epoch for e in self.schedule)
        for dl in loaders:
            if dl.num_workers > 0 and getattr(dl, "persistent_workers", False) and later_change \
                    and trainer.reload_dataloaders_every_n_epochs != 1:
                raise ValueError(
                    "ProgressiveResizeCallback: the train DataLoader has persistent_workers=True, so its workers "
                    "keep their copy of the dataset and would never see the new size; use persistent_workers=False "
                    "or Trainer(reload_dataloaders_every_n_epochs=1)")
        target = self._target(trainer.current_epoch)
        if target != self._applied and any(dl.num_workers > 0 for dl in loaders):
            warnings.warn(
                f"ProgressiveResizeCallback: epoch {trainer.current_epoch} should train at {target} but its "
                f"DataLoader workers already started at {self._applied}; the size changes from the next epoch",
                UserWarning, stacklevel=2)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        size = self._target(trainer.current_epoch)
        self._apply(trainer, size)
        pl_module.log("train/image_size", float(size[0]), on_step=False, on_epoch=True, sync_dist=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before the next epoch's DataLoader iterator (and its workers) is created.
        self._apply(trainer, self._target(trainer.current_epoch + 1))
