"""`lesion-lightning reproduce TABLE`: regenerate a paper's results table beside the paper's numbers.

Runs every job of the table spec (experiments/tables/TABLE.yaml) that has not finished yet — one
training + evaluation run per (model, dataset, split/fold, seed), each in its own run folder — then
aggregates mean ± std over seeds/folds, paired t-tests against the paper's proposed model, and
writes results/tables/TABLE.{md,csv,tex,png}. `--list` shows every spec.

Profiles: `paper` (the paper's protocol on the real dataset; needs --data-root) and `smoke` (the
embedded default data — the real HAM10000 sample, else synthetic — with few epochs and small images;
every output says the data is not the paper's dataset).
"""

from __future__ import annotations

import argparse
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", nargs="?", help="table id (e.g. lanet-table5), a unique short form, or a spec path")
    parser.add_argument("--list", action="store_true", help="list every table spec and exit")
    parser.add_argument("--profile", choices=("paper", "smoke"), default="paper",
                        help="paper: the paper's protocol on the real data (needs --data-root); "
                             "smoke: embedded sample data, few epochs, small images (default: paper)")
    parser.add_argument("--data-root", action="append", metavar="DIR|NAME=DIR",
                        help="real dataset root: DIR for a one-dataset table, DIR holding <dataset>/ folders, "
                             "or NAME=DIR (repeatable)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the spec's / profile's)")
    parser.add_argument("--rows", default=None, help="comma-separated row ids to run (default: every implemented row)")
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's number of epochs")
    parser.add_argument("--image-size", type=int, default=None, help="override the profile's image size")
    parser.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    parser.add_argument("--limit-batches", type=float, default=None,
                        help="Lightning limit_train/val_batches (an int count or a fraction), for quick checks")
    parser.add_argument("--metrics", default=None, metavar="M1,M2",
                        help="print these metrics too (e.g. jsc_th,dice_per_image,iou_per_image,mean_iou,dice_eq2), "
                             "beside the table's own; they have no paper value")
    parser.add_argument("--score-resolution", choices=("network", "original"), default=None,
                        help="score at the network input size or at each image's original size (predictions "
                             "resized back), overriding the table's scoring.resolution")
    parser.add_argument("--output", default="results/tables", help="folder of the table outputs (default: results/tables)")
    parser.add_argument("--runs-root", default="runs", help="root of the job run folders (default: runs)")
    parser.add_argument("--logger", default="none", choices=("none", "csv", "wandb"), help="logger of each job (default: none)")
    parser.add_argument("--keep-checkpoints", choices=("yes", "no", "auto"), default="auto",
                        help="keep each job's checkpoints (auto: yes for the paper profile, no for smoke, whose "
                             "results stay in metrics.json)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N jobs at once, each in its own process (default: 1, one after another)")
    parser.add_argument("--job-index", type=int, default=None, metavar="I",
                        help="run only job I of the plan (0-based, the order of --dry-run), e.g. "
                             "$SLURM_ARRAY_TASK_ID of a job array; aggregate afterwards with --no-run")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs (and which are finished) without running them")
    parser.add_argument("--no-run", action="store_true", help="aggregate what is finished without running anything")


def _list(console) -> int:
    from lesion_lightning.tables.spec import TABLES_DIR, load_all

    specs = load_all()
    print(f"{len(specs)} table specs in {TABLES_DIR} (run: lesion-lightning reproduce TABLE [--profile paper|smoke]):")
    for s in specs:
        ours = sum(not r.paper_only for r in s.rows)
        split = (s.split or "") + (f" x{s.folds} folds" if s.folds else "")
        data = ",".join(s.datasets) + (" -> " + ",".join(s.test_datasets) if s.test_datasets else "")
        where = "; ".join(x for x in (s.kind, data, split) if x)
        cited = sum(bool(r.cited_from) for r in s.rows)
        print(f"  {s.id:22s} {s.paper.split(':')[0].split(' (')[0][:40]:40s} Table {s.table:28s} [{where}] "
              f"rows: {ours} ours + {len(s.rows) - ours} paper-only" + (f" ({cited} cited)" if cited else ""))
        if s.scoring is not None:
            print(f"  {'':22s} protocol: {s.protocol.describe()}")
            print(f"  {'':22s} scoring: {s.scoring.describe()}")
        deviations = sum(bool(r.deviation) for r in s.rows)
        if deviations:
            print(f"  {'':22s} {deviations} row(s) with a stated deviation from the paper's protocol")
    return 0


def _plan(args: argparse.Namespace):
    """(spec, jobs) of the table and options; SpecError/JobError for a bad table, row or data root."""
    from lesion_lightning.tables.runner import plan_jobs
    from lesion_lightning.tables.spec import SpecError, find_spec, with_options

    spec = with_options(find_spec(args.table), args.metrics, args.score_resolution)
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    unknown = [r for r in rows or [] if r not in {x.id for x in spec.rows}]
    if unknown:
        raise SpecError(f"{spec.path}: --rows: unknown row id(s) {', '.join(unknown)}; "
                        f"rows: {', '.join(x.id for x in spec.rows)}")
    overrides = {"epochs": args.epochs, "image_size": args.image_size, "batch_size": args.batch_size,
                 "limit_batches": (int(args.limit_batches) if args.limit_batches and args.limit_batches >= 1
                                   else args.limit_batches)}
    return spec, plan_jobs(spec, args.profile, args.runs_root, data_root=args.data_root, seeds=args.seeds,
                           rows=rows, overrides=overrides)


def _run_jobs(spec, jobs, args: argparse.Namespace, console) -> dict[str, int]:
    """Run the unfinished jobs with a progress bar; returns the counts {ran, skipped, failed}."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lesion_lightning.tables.runner import run_jobs

    started = time.time()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[current]}"), console=console, transient=False) as progress:
        task = progress.add_task(spec.id, total=len(jobs), completed=0, current="")

        def on_event(event: str, job, err) -> None:
            if event == "start":
                progress.update(task, current=f"running {job.label}")
                return
            progress.advance(task)
            if event == "failed":
                progress.console.print(f"[red]job failed:[/] {job.label}: {err}")
            elif event == "done":
                progress.console.print(f"[green]done[/] {job.label}  ({job.run_dir})")
            elif event == "busy":
                progress.console.print(f"[yellow]skipped:[/] {job.label}: {err}")

        keep = args.keep_checkpoints == "yes" or (args.keep_checkpoints == "auto" and args.profile == "paper")
        counts = run_jobs(jobs, logger=args.logger, on_event=on_event, keep_checkpoints=keep,
                          table=spec.conventions(), workers=args.jobs)
        progress.update(task, current="")
    console.print(f"ran {counts['ran']}, skipped {counts['skipped']} finished, failed {counts['failed']} "
                  f"in {time.time() - started:.0f} s")
    return counts


def _run_one(spec, job, args: argparse.Namespace, console) -> int:
    """One job of the plan (a job-array task); no table is written, so array tasks never race on it."""
    args.keep_checkpoints = "yes"  # a later job of the plan may test this job's checkpoint
    counts = _run_jobs(spec, [job], args, console)
    console.print(f"job {args.job_index}: {job.label}: {'failed' if counts['failed'] else 'finished'}; "
                  "aggregate the table with the same command, --no-run instead of --job-index")
    return 1 if counts["failed"] else 0


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from lesion_lightning.tables.aggregate import aggregate, header_lines, print_table, write_outputs
    from lesion_lightning.tables.runner import JobError, is_done
    from lesion_lightning.tables.spec import SpecError

    console = Console()
    if not args.table and not args.list:
        console.print("[red]error:[/] give a TABLE (see `lesion-lightning reproduce --list`)")
        return 2
    try:
        if args.list:
            return _list(console)
        spec, jobs = _plan(args)
    except (SpecError, JobError) as err:
        # soft_wrap: an error names a file path, which must not be broken across lines.
        console.print(f"[red]error:[/] {escape(str(err))}", soft_wrap=True, highlight=False)
        return 2
    for line in header_lines(spec, args.profile):
        console.print(f"[bold yellow]{line}[/]" if line.startswith("SMOKE") else line)
    if args.jobs < 1 or (args.job_index is not None and not 0 <= args.job_index < len(jobs)):
        what = f"--jobs {args.jobs}: give 1 or more" if args.jobs < 1 else \
            f"--job-index {args.job_index}: the plan has jobs 0 to {len(jobs) - 1} (see --dry-run)"
        console.print(f"[red]error:[/] {what}", soft_wrap=True, highlight=False)
        return 2
    if args.job_index is not None:
        return _run_one(spec, jobs[args.job_index], args, console)
    done = sum(is_done(j) for j in jobs)
    console.print(f"{len(jobs)} jobs, {done} already finished (skipped), {len(jobs) - done} to run")
    if args.dry_run:
        for j in jobs:
            console.print(f"  {'done' if is_done(j) else 'todo'}  {j.label:40s} {j.run_dir}")
        return 0
    counts = {"ran": 0, "skipped": done, "failed": 0}
    if not args.no_run and done < len(jobs):
        counts = _run_jobs(spec, jobs, args, console)
    result = aggregate(spec, jobs, args.profile)
    print_table(result, console)
    paths = write_outputs(result, args.output)
    console.print("Wrote " + ", ".join(str(p) for p in paths.values()))
    return 1 if counts["failed"] else 0
