"""`lesion-lightning cross-eval`: a tiny model trained on the HAM10000 sample, scored on PH2, ISIC 2017 and an
ISIC 2018 tree that holds copies of some of its training images (by id, and one under another id)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from lesion_lightning.cli import main
from lesion_lightning.data.readers import ISIC2018_FOLDERS
from lesion_lightning.paths import sample_dataset_root

REPO = Path(__file__).resolve().parent.parent
DEMO = str(REPO / "experiments" / "demo.yaml")
RENAMED_COPY = "ISIC_9000001"  # a HAM10000 training image copied under an id of its own


def _samples() -> dict[str, Path]:
    roots = {name: sample_dataset_root(name) for name in ("ham10000", "ph2", "isic2017")}
    missing = [n for n, r in roots.items() if r is None]
    if missing:
        pytest.skip(f"real sample(s) {', '.join(missing)} not found (expected ../shared/data beside the checkout)")
    return roots  # type: ignore[return-value]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Train once: simple_unet (base_width 4) at 32 px, 1 epoch, on the HAM10000 sample; build the ISIC 2018 tree."""
    roots = _samples()
    base = tmp_path_factory.mktemp("cross_eval")
    cache = base / "cache"
    main(["fit", "--config", DEMO, f"--data.root={roots['ham10000']}", "--data.image_size=32",
          "--data.batch_size=8", f"--data.cache={cache}", f"--output_root={base / 'runs'}",
          "--trainer.enable_progress_bar=false", "--trainer.max_epochs=1", "--logger=none", "--run_name=ham",
          "--model.init_args.model_kwargs={base_width: 4}", "--model.init_args.lr=0.02"])
    run = base / "runs" / "demo" / "ham"
    split = json.loads((run / "split.json").read_text())
    train_ids, test_ids = sorted(split["subsets"]["train"]), sorted(split["subsets"]["test"])

    # ISIC 2018 layout: 3 synthetic images, 3 HAM10000 training images under their own ids, 1 under a new
    # id (found by content only) and 1 HAM10000 *test* image (shared with HAM10000 but not seen in training).
    from lesion_lightning.data.synthetic import write_dataset

    tree = write_dataset(base / "isic2018", "isic2018", image_size=(48, 64), subsets={"train": 3})
    img_dir, gt_dir = (tree / f for f in ISIC2018_FOLDERS["train"])
    ham_img = roots["ham10000"] / "HAM10000_images_part_1"
    ham_gt = roots["ham10000"] / "HAM10000_segmentations_lesion_tschandl"

    def copy(src_id: str, dst_id: str) -> None:
        shutil.copyfile(ham_img / f"{src_id}.jpg", img_dir / f"{dst_id}.jpg")
        shutil.copyfile(ham_gt / f"{src_id}_segmentation.png", gt_dir / f"{dst_id}_segmentation.png")

    for i in train_ids[:3]:
        copy(i, i)
    copy(train_ids[3], RENAMED_COPY)
    copy(test_ids[0], test_ids[0])
    return {"run": run, "cache": cache, "isic2018": tree, "base": base, "roots": roots,
            "shared": sorted(train_ids[:3] + [RENAMED_COPY]), "unseen_ham": test_ids[0],
            "renamed_from": train_ids[3], "num_train": len(train_ids)}


def _cross_eval(capsys, env, out: Path, *extra: str) -> tuple[int, dict]:
    rc = main(["cross-eval", "--ckpt", str(env["run"]), "--datasets", "ph2,isic2017,isic2018",
               "--data-roots", f"isic2018={env['isic2018']}", "--cache", str(env["cache"]), "--output", str(out),
               "--json", *extra])
    return rc, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def excluded(env, tmp_path_factory):
    """One cross-eval run with --exclude-overlap and saved predictions (shared by the tests below)."""
    out = tmp_path_factory.mktemp("ce_out") / "r"
    capsys_like = _Capture()
    with capsys_like:
        rc = main(["cross-eval", "--ckpt", str(env["run"]), "--datasets", "ph2,isic2017,isic2018",
                   "--data-roots", f"isic2018={env['isic2018']}", "--cache", str(env["cache"]),
                   "--output", str(out), "--exclude-overlap", "--save-predictions", "--json"])
    return rc, json.loads(capsys_like.text), out


class _Capture:
    """Capture stdout in a module-scoped fixture (pytest's capsys is function-scoped)."""

    def __enter__(self):
        import contextlib
        import io

        self._buf = io.StringIO()
        self._cm = contextlib.redirect_stdout(self._buf)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        self.text = self._buf.getvalue()


def _by_dataset(doc: dict) -> dict[str, dict]:
    return {r["dataset"]: r for r in doc["results"]}


def test_overlap_detected_by_id_and_content(env, excluded):
    rc, doc, out = excluded
    assert rc == 0
    assert doc["training_set"]["dataset"] == "ham10000" and doc["training_set"]["num_seen"] == env["num_train"]
    assert doc["headline"] == "unseen" and doc["exclude_overlap"] is True
    res = _by_dataset(doc)
    isic = res["isic2018"]
    assert isic["num_images"] == 8 and isic["num_shared"] == 4 and isic["num_unseen"] == 4
    shared = {row["id"] for row in isic["per_image"] if row["seen"]}
    assert shared == set(env["shared"])
    assert env["unseen_ham"] not in shared  # a HAM10000 image the model never trained on is unseen
    assert [env["renamed_from"], RENAMED_COPY] in isic["overlap"]["same_content_other_id"]
    assert isic["headline"] == isic["unseen"] and isic["unseen"]["num_images"] == 4
    for name, n in (("ph2", 12), ("isic2017", 2)):
        assert res[name]["num_shared"] == 0 and res[name]["num_images"] == n
        assert res[name]["all"] == res[name]["unseen"]  # nothing shared: both numbers agree
    # outputs
    for name in ("cross_eval.json", "cross_eval.csv", "cross_eval.md", "per_image_isic2018.csv"):
        assert (out / name).is_file(), name
    with (out / "per_image_isic2018.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["id"] for r in rows if r["seen"] == "True") == env["shared"]
    with (out / "cross_eval.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [(r["dataset"], r["images"], r["headline"]) for r in table][:2] == [("ph2", "all", "False"),
                                                                            ("ph2", "unseen", "True")]
    md = (out / "cross_eval.md").read_text()
    assert "**unseen**" in md and "ISIC 2018" in md and "4 image(s) shared" in md


def test_all_images_equal_evaluate_command(env, excluded, capsys):
    """The all-image numbers equal `lesion-lightning evaluate` on the saved predictions and masks."""
    _, doc, out = excluded
    for name, entry in _by_dataset(doc).items():
        pred, gt = out / "predictions" / name / "pred", out / "predictions" / name / "gt"
        assert len(list(pred.iterdir())) == entry["num_images"]
        assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
        ref = json.loads(capsys.readouterr().out)
        assert ref["num_images"] == entry["all"]["num_images"]
        for agg in ("pooled", "per_image"):
            for k, v in ref[agg].items():
                assert entry["all"][agg][k] == pytest.approx(v, abs=1e-6), (name, agg, k)


def test_unseen_numbers_equal_numpy(env, excluded):
    """Unseen-only numbers equal a numpy computation on the saved predictions of the unseen images."""
    from PIL import Image

    _, doc, out = excluded
    isic = _by_dataset(doc)["isic2018"]
    folder = out / "predictions" / "isic2018"
    tp = fp = tn = fn = 0
    dices = []
    for path in sorted((folder / "pred").iterdir()):
        if path.stem in env["shared"]:
            continue
        p = np.asarray(Image.open(path).convert("L")) > 127
        g = np.asarray(Image.open(folder / "gt" / f"{path.stem}_segmentation.png").convert("L")) > 127
        a, b, c, d = int((p & g).sum()), int((p & ~g).sum()), int((~p & ~g).sum()), int((~p & g).sum())
        tp, fp, tn, fn = tp + a, fp + b, tn + c, fn + d
        dices.append(2 * a / (2 * a + b + d) if (2 * a + b + d) else 1.0)
    pooled = isic["unseen"]["pooled"]
    assert len(dices) == isic["num_unseen"] == 4
    assert pooled["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-6)
    assert pooled["iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
    assert pooled["accuracy"] == pytest.approx((tp + tn) / (tp + fp + tn + fn), abs=1e-6)
    assert pooled["sensitivity"] == pytest.approx(tp / (tp + fn) if tp + fn else 1.0, abs=1e-6)
    assert pooled["specificity"] == pytest.approx(tn / (tn + fp) if tn + fp else 1.0, abs=1e-6)
    assert isic["unseen"]["per_image"]["dice"] == pytest.approx(np.mean(dices), abs=1e-6)


def test_predictions_equal_an_independent_forward_pass(env, excluded):
    """The saved PH2 predictions are the model's own at the run's working size (checkpoint loaded by hand)."""
    import cv2
    import torch

    from lesion_lightning.data.io import load_image
    from lesion_lightning.data.readers import read_dataset
    from lesion_lightning.training.task import SegmentationTask

    _, doc, out = excluded
    ckpt = torch.load(doc["checkpoint"], map_location="cpu", weights_only=True)
    task = SegmentationTask(**{k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")})
    task.load_state_dict(ckpt["state_dict"])
    task.eval()
    record = read_dataset("ph2", env["roots"]["ph2"])[0]
    image = cv2.resize(load_image(record.image_path), (32, 32), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        probs = torch.sigmoid(task(x))[0, 0].numpy()
    from PIL import Image

    saved = np.asarray(Image.open(out / "predictions" / "ph2" / "pred" / f"{record.id}.png")) > 0
    agree = float(((probs > 0.5) == saved).mean())
    assert agree > 0.99  # resize kernels may differ on a pixel or two at the 0.5 boundary


def test_without_exclude_overlap_headline_is_all(env, excluded, capsys, tmp_path):
    rc, doc = _cross_eval(capsys, env, tmp_path / "o")
    assert rc == 0 and doc["headline"] == "all"
    isic = _by_dataset(doc)["isic2018"]
    assert isic["headline"] == isic["all"] and isic["all"]["num_images"] == 8
    # same numbers as the --exclude-overlap run: only the headline differs
    _, ref, _ = excluded
    assert isic["all"] == _by_dataset(ref)["isic2018"]["all"]
    assert isic["unseen"] == _by_dataset(ref)["isic2018"]["unseen"]


def test_batch_jobs(env, excluded, tmp_path, capsys):
    jobs = {
        "title": "test jobs",
        "defaults": {"datasets": ["isic2018"], "data_roots": {"isic2018": str(env["isic2018"])}},
        "jobs": [
            {"name": "by-run", "run": str(env["run"]), "exclude_overlap": True,
             "paper": {"isic2018": {"dice": 91.09}}},
            {"name": "by-dataset", "train_dataset": "ham10000", "model": "simple_unet",
             "runs_root": str(env["base"] / "runs")},
        ],
    }
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(jobs))
    out = tmp_path / "jobs_out"
    rc = main(["cross-eval", "--jobs", str(path), "--cache", str(env["cache"]), "--output", str(out), "--json"])
    docs = json.loads(capsys.readouterr().out)
    assert rc == 0 and [d["name"] for d in docs] == ["by-run", "by-dataset"]
    assert docs[0]["headline"] == "unseen" and docs[1]["headline"] == "all"
    assert docs[0]["run_dir"] == docs[1]["run_dir"] == str(env["run"])
    _, ref, _ = excluded
    for d in docs:
        assert d["results"][0]["all"] == _by_dataset(ref)["isic2018"]["all"]
        assert (out / d["name"] / "cross_eval.json").is_file()
    assert docs[0]["results"][0]["paper"] == {"dice": 91.09}
    summary = (out / "cross_eval.md").read_text()
    assert summary.startswith("# test jobs") and "by-dataset" in summary and "| ISIC 2018 | paper |" in summary


def test_table9_jobs_file_is_valid():
    from lesion_lightning.evaluation.cross_jobs import load_jobs

    spec = load_jobs(REPO / "experiments" / "cross_eval" / "lanet_table9.yaml")
    (job,) = [j for j in spec["jobs"] if j.get("model") == "lanet"]
    assert job["paper"]["isic2017"] == {"accuracy": 93.81, "dice": 90.79, "iou": 82.00, "sensitivity": 88.89,
                                        "specificity": 91.71}
    assert job["paper"]["ph2"]["dice"] == 90.61 and job["paper"]["isic2018"]["iou"] == 83.07


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--datasets", "isic2019"], "--datasets: unknown dataset(s) isic2019"),
        (["--data-roots", "ph2"], "--data-roots: 'ph2' is not NAME=DIR"),
        (["--data-roots", "ph2=/no/such/dir"], "--data-roots: ph2=/no/such/dir: folder not found"),
        (["--seen", "training"], "--seen"),
    ],
)
def test_bad_options(env, capsys, tmp_path, argv, expected):
    rc = main(["cross-eval", "--ckpt", str(env["run"]), "--output", str(tmp_path / "x"), *argv])
    assert rc == 2
    assert expected in capsys.readouterr().err


def test_bad_checkpoint_and_jobs(env, capsys, tmp_path):
    assert main(["cross-eval", "--ckpt", str(tmp_path / "nope")]) == 2
    assert "no such run folder, checkpoint file or published weights" in capsys.readouterr().err
    # a bare checkpoint (no split.json beside it) needs --train-root
    bare = tmp_path / "model.ckpt"
    shutil.copyfile(env["run"] / "checkpoints" / "last.ckpt", bare)
    assert main(["cross-eval", "--ckpt", str(bare), "--datasets", "isic2017", "--cache", str(env["cache"])]) == 2
    assert "--train-root" in capsys.readouterr().err
    bad = tmp_path / "jobs.yaml"
    bad.write_text("jobs:\n  - {run: x, datasets: [ph2], colour: red}\n")
    assert main(["cross-eval", "--jobs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "unknown key(s) colour" in err


@pytest.mark.slow
def test_original_resolution(env, capsys, tmp_path):
    """--resolution original: scored against the original masks; equals `evaluate` on the saved full-size PNGs."""
    out = tmp_path / "orig"
    rc = main(["cross-eval", "--ckpt", str(env["run"]), "--datasets", "ph2", "--cache", str(env["cache"]),
               "--resolution", "original", "--save-predictions", "--output", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    entry = doc["results"][0]
    pred = out / "predictions" / "ph2" / "pred"
    from PIL import Image

    first = sorted(pred.iterdir())[0]
    assert Image.open(first).size[0] > 700  # PH2 originals are ~765x574
    assert main(["evaluate", "--pred", str(pred), "--gt", str(out / "predictions" / "ph2" / "gt"), "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    for k, v in ref["pooled"].items():
        assert entry["all"]["pooled"][k] == pytest.approx(v, abs=1e-6)


def test_missing_dataset_is_an_error_unless_synthetic_is_asked_for(env, capsys, tmp_path):
    if sample_dataset_root("isic2018") is not None:
        pytest.skip("an embedded ISIC 2018 sample exists here: nothing is missing")
    argv = ["cross-eval", "--ckpt", str(env["run"]), "--datasets", "isic2018", "--cache", str(env["cache"])]
    assert main([*argv, "--output", str(tmp_path / "refused"), "--json"]) == 1
    captured = capsys.readouterr()
    assert "--data-roots isic2018=DIR" in captured.err and "--synthetic" in captured.err
    (entry,) = json.loads(captured.out)["results"]
    assert "error" in entry and "all" not in entry
    out = tmp_path / "synthetic"
    assert main([*argv, "--synthetic", "--output", str(out), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["results"]
    assert entry["data_source"] == "synthetic" and "SYNTHETIC" in entry["label"]
    # marked in every output
    assert json.loads((out / "cross_eval.json").read_text())["results"][0]["data_source"] == "synthetic"
    with (out / "cross_eval.csv").open() as fh:
        assert {r["data_source"] for r in csv.DictReader(fh)} == {"synthetic"}
    with (out / "per_image_isic2018.csv").open() as fh:
        assert {r["data_source"] for r in csv.DictReader(fh)} == {"synthetic"}
    assert "ISIC 2018 (SYNTHETIC)" in (out / "cross_eval.md").read_text()
