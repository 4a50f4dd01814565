"""Optimisers and learning-rate schedules named in configs (the papers' recipes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import lr_scheduler

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "cosine", "step", "plateau")


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"unknown model.optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    max_epochs: int,
    warmup_epochs: int = 0,
    **options: Any,
) -> lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau | None:
    """An epoch-stepped scheduler; `warmup_epochs` prepends a linear warm-up from 1% of the rate."""
    name = (name or "none").lower()
    if name not in SCHEDULERS:
        raise ValueError(f"unknown model.scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    allowed = {"cosine": {"t_max", "eta_min"}, "step": {"step_size", "gamma"}, "plateau": {"factor", "patience", "min_lr"},
               "none": set()}[name]
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"model.scheduler_kwargs {sorted(unknown)} not understood by scheduler {name!r}; allowed: {sorted(allowed) or 'none'}"
        )
    if warmup_epochs < 0:
        raise ValueError(f"model.warmup_epochs must be >= 0, got {warmup_epochs}")
    if name == "none":
        main = None
    elif name == "cosine":
        # SCSONet steps a T_max=50 cosine per epoch over 300 epochs (it cycles); t_max keeps that possible.
        t_max = int(options.get("t_max", max(1, max_epochs - warmup_epochs)))
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=float(options.get("eta_min", 0.0)))
    elif name == "step":
        main = lr_scheduler.StepLR(optimizer, step_size=int(options.get("step_size", 30)), gamma=float(options.get("gamma", 0.1)))
    else:
        if warmup_epochs:
            raise ValueError("model.warmup_epochs cannot be combined with scheduler 'plateau'")
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=float(options.get("factor", 0.5)), patience=int(options.get("patience", 10)),
            min_lr=float(options.get("min_lr", 0.0)),
        )
    if not warmup_epochs:
        return main
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup_epochs)
    if main is None:
        return warmup
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_epochs])
