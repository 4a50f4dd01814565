"""`lesion-lightning` entry point.

Training subcommands (fit/validate/test/predict with --config) go to LightningCLI; every other
subcommand is a small argparse program in `lesion_lightning.commands.<name>` exposing
`configure(parser)` and `run(args) -> int`. Modules are imported lazily so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lesion_lightning import __version__

# LightningCLI subcommands; they take --config/--model.x/--data.x/--trainer.x options.
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")

PREDICT_HELP = ("predict --ckpt RUN_OR_CKPT --input FILE_OR_DIR --output DIR: masks, overlays and a CSV for "
                "image files (with --config: LightningCLI `predict`)")

# name -> (module under lesion_lightning.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check-data": ("check_data", "validate a dataset folder and summarise it"),
    "split": ("split", "write a reproducible split manifest (JSON)"),
    "download": ("download", "download and extract an official dataset archive"),
    "synthetic": ("synthetic", "generate a synthetic ISIC-2018-layout dataset"),
    "evaluate": ("evaluate", "score predicted masks against ground truth"),
    "models": ("models", "list registered models with params/MACs/FLOPs beside their papers'"),
    "complexity": ("complexity", "parameters, MACs, FLOPs and memory of one model at a given input size"),
    "demo": ("demo", "train and test the demo model on the embedded default data"),
    "sweep": ("sweep", "W&B hyperparameter sweeps: create/agent (W&B server) or local (offline loop + leaderboard)"),
    "predict-images": ("predict_images", "masks, overlays and a CSV for image files (also `predict --ckpt RUN_OR_CKPT`)"),
    "explain": ("explain", "Grad-CAM and activation maps of a trained model on images"),
    "export": ("export", "export a trained model to ONNX, TorchScript or safetensors (+ model card), verified"),
    "reproduce": ("reproduce", "regenerate a paper's results table (experiments/tables/) beside the paper's numbers"),
    "bench": ("bench", "latency, FPS, params and MACs per model and input size beside the papers' figures"),
    "cross-eval": ("cross_eval", "evaluate a trained model on other datasets, overlap-aware (LANET Table 9)"),
}


def _available_commands() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"lesion_lightning.commands.{module}") is not None:
            out[name] = (module, help_text)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesion-lightning",
        description="Train, evaluate, compare and reproduce lightweight skin-lesion segmentation models.",
        epilog="Training: lesion-lightning {fit,validate,test,predict} --config experiments/<...>.yaml "
        "(run `lesion-lightning fit --help` for every option; --debug shows a failure's traceback). "
        "Your images: lesion-lightning predict --ckpt RUN_OR_CKPT --input FILE_OR_DIR --output DIR.",
    )
    parser.add_argument("--version", action="version", version=f"lesion-lightning {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_SUBCOMMANDS:
        sub.add_parser(name, help=PREDICT_HELP if name == "predict" else
                       f"LightningCLI `{name}` (see `lesion-lightning {name} --help`)", add_help=False)
    for name, (module, help_text) in _available_commands().items():
        mod = importlib.import_module(f"lesion_lightning.commands.{module}")
        options = {"prog": f"{parser.prog} predict", "epilog": "With --config, `predict` is LightningCLI's "
                   "(`lesion-lightning predict --config FILE --help`)."} if name == "predict-images" else {}
        p = sub.add_parser(name, help=help_text, description=help_text, **options)
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def _finish_failed_wandb_run() -> None:
    """Close a W&B run the failed stage left open (marked failed), so its file is complete and a later
    run in the same process starts a new one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.run.finish(exit_code=1)


def run_training(argv: list[str]) -> int:
    """A LightningCLI subcommand. A failure (bad data, split, checkpoint or config) prints its message in one
    line and returns 1; `--debug` shows the traceback instead."""
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    from lesion_lightning.training.cli import build_cli

    try:
        build_cli(argv)
    except Exception as exc:  # noqa: BLE001 - every failure of a run gets the short form unless --debug
        _finish_failed_wandb_run()
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `predict --ckpt RUN_OR_CKPT --input ...` (no --config) predicts image files; `predict --config` is LightningCLI's.
    # `predict --help` without --config shows that form too (LightningCLI's with --config).
    if argv[:1] == ["predict"] and not any(a == "--config" or a.startswith("--config=") for a in argv) \
            and any(a in ("--ckpt", "-h", "--help") or a.startswith("--ckpt=") for a in argv):
        argv[0] = "predict-images"
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        return run_training(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
