"""Sub-commands of `lesion-lightning`; each module has `configure(parser)` and `run(args) -> int`."""
