"""Hyperparameter sweeps: W&B sweep YAMLs (experiments/sweeps/), `sweep create/agent` for a W&B server, and
the offline `sweep local` loop on W&B's own sweep engine (docs/sweeps.md)."""
