"""Silence messages that do not concern a lesion-lightning user (each filter names what it hides and why)."""

from __future__ import annotations

import logging
import warnings


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


_LITLOGGER_TIP = _DropLitLoggerTip()


def silence_irrelevant_messages() -> None:
    # We call LightningCLI with the parsed command line on purpose (lesion_lightning.cli routes subcommands).
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    # Lightning's own pytree helper calls a torch API deprecated in newer torch; nothing the user can change.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # test/validate/predict of an EMA recipe's checkpoint: its state_dict already holds the averaged weights
    # (tests/test_presets.py checks `test` scores them); the averaging state only matters for resuming fit.
    warnings.filterwarnings("ignore", message="You're using the WeightAveraging callback, but loading a checkpoint")
    # An advertisement for another logging service at every Trainer start. (W&B's own notices, e.g. about the
    # `anonymous` option Lightning always passes, are silenced by WANDB_SILENT in training/loggers.py.)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_LITLOGGER_TIP)


def silence_resume_notice() -> None:
    # A resumed fit writes into its own run's checkpoints/ folder: that it is not empty is the point.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
