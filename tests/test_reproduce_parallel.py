"""`reproduce --jobs N` and the results store under several processes (issue 15).

The fast tests replace the training by a fake job so that they check the claiming and counting only; the
slow test runs the tiny smoke table of test_reproduce.py with --jobs 1 and --jobs 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lesion_lightning.cli import main
from lesion_lightning.tables import runner
from lesion_lightning.tables.parallel import JobBusy, claim
from lesion_lightning.tables.spec import load_spec
from lesion_lightning.paths import REPO_ROOT
from test_reproduce import TINY


def _tiny_jobs(tmp_path: Path) -> list:
    spec_path = tmp_path / "tiny-table.yaml"
    if not spec_path.is_file():  # written once: the two processes of the test below read it concurrently
        spec_path.write_text(TINY)
    return runner.plan_jobs(load_spec(spec_path), "smoke", tmp_path / "runs")


def _fake_run_job(job, logger="none", table=None) -> dict:
    """Stands in for training: records who ran the job, then stores a result like run_job does."""
    run_dir = Path(job.run_dir)
    with open(run_dir.parent / "ran.log", "a") as fh:
        fh.write(f"{job.run_dir}\n")
    time.sleep(0.3)
    runner.write_json(run_dir / "metrics.json", {job.result_section: {"dice": 0.5}})
    runner._mark(job, "done")
    return {"dice": 0.5}


def test_a_job_another_process_holds_is_skipped_untouched(tmp_path, monkeypatch):
    jobs = _tiny_jobs(tmp_path)
    monkeypatch.setattr(runner, "run_job", _fake_run_job)
    events = []
    with claim(jobs[0].run_dir):  # as another process running job 0 would (flock is per open file)
        with pytest.raises(JobBusy, match="another process"):
            with claim(jobs[0].run_dir):
                pass
        counts = runner.run_jobs(jobs, on_event=lambda e, j, err: events.append((e, j.run_dir)))
    assert counts == {"ran": 3, "skipped": 1, "failed": 0}
    assert ("busy", jobs[0].run_dir) in events
    assert not (Path(jobs[0].run_dir) / runner.JOB_FILE).exists()  # the other process's job is left alone
    assert runner.run_jobs(jobs)["ran"] == 1  # once released, it runs


def test_two_processes_on_one_table_run_each_job_once(tmp_path):
    _tiny_jobs(tmp_path)  # writes the spec
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO_ROOT)!r}, {str(Path(__file__).parent)!r}]
        from pathlib import Path
        from lesion_lightning.tables import runner
        from test_reproduce_parallel import _fake_run_job, _tiny_jobs
        runner.run_job = _fake_run_job
        print(runner.run_jobs(_tiny_jobs(Path({str(tmp_path)!r}))))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ran = (tmp_path / "runs" / "reproduce-tiny-table" / "ran.log").read_text().splitlines()
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 4, ran
    assert all(runner.is_done(j) for j in _tiny_jobs(tmp_path))


def test_bad_jobs_and_job_index_are_one_line_errors(tmp_path, capsys):
    spec = tmp_path / "tiny-table.yaml"
    spec.write_text(TINY)
    base = ["reproduce", str(spec), "--profile", "smoke", "--runs-root", str(tmp_path / "runs")]
    assert main([*base, "--jobs", "0"]) == 2
    assert "--jobs 0: give 1 or more" in capsys.readouterr().out
    assert main([*base, "--job-index", "4"]) == 2
    assert "--job-index 4: the plan has jobs 0 to 3" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def _table(tmp_path: Path, name: str, *extra: str) -> str:
    spec = tmp_path / "tiny-table.yaml"
    spec.write_text(TINY)
    out = tmp_path / name
    argv = ["reproduce", str(spec), "--profile", "smoke", "--runs-root", str(tmp_path / f"runs-{name}"),
            "--output", str(out), *extra]
    assert main(argv) == 0
    return (out / "tiny-table.csv").read_text()


@pytest.mark.slow
def test_jobs_2_gives_the_table_of_jobs_1(tmp_path, capsys):
    one = _table(tmp_path, "one", "--jobs", "1")
    started = time.time()
    two = _table(tmp_path, "two", "--jobs", "2")
    printed = capsys.readouterr().out
    assert "ran 4, skipped 0 finished, failed 0" in printed, printed[-2000:]
    assert one == two
    for job_file in (tmp_path / "runs-two").glob("*/*/job.json"):
        assert json.loads(job_file.read_text())["status"] == "done"
    print(f"--jobs 2: {time.time() - started:.0f} s")
