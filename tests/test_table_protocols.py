"""Issue 10: each table declares its protocol and scoring convention, every output prints them, and the
protocols the papers ran (LANET final-epoch, SLSNet Table 4 split, Aksoy's two-class IoU and Eq. 2 Dice,
SCSONet lowest-validation-loss checkpoint, original-size scoring as the ISIC scorer counts)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lesion_lightning.cli import main
from lesion_lightning.tables import runner
from lesion_lightning.tables.aggregate import aggregate, write_outputs
from lesion_lightning.tables.spec import SpecError, find_spec, load_all, load_spec, with_options
from lesion_lightning.metrics import SegmentationMetrics
from lesion_lightning.paths import REPO_ROOT, sample_dataset_root
from tests.test_reproduce import TINY
from tests.tiny_run import fit_tiny_run


# -- every table says how it scores -----------------------------------------------------------------
def test_every_scored_table_declares_protocol_and_scoring():
    for spec in load_all():
        if spec.kind in ("train", "cross-dataset"):
            assert spec.scoring is not None and spec.scoring.why, spec.id
            assert spec.protocol.why, spec.id
        lines = "\n".join(spec.convention_lines())
        if spec.scoring is not None:
            assert "Scoring: " in lines and "Protocol: " in lines


def test_outputs_print_convention_deviation_and_cited_rows(tmp_path):
    spec_path = tmp_path / "tiny-table.yaml"
    spec_path.write_text(TINY.replace('label: "Wide",', 'label: "Wide", deviation: "trained 1 epoch, paper 20",')
                         .replace('paper_only: true,', 'cited_from: "Al-Masni et al. (2018)",'))
    spec = load_spec(spec_path)
    assert spec.row("other").paper_only and spec.row("other").cited_from == "Al-Masni et al. (2018)"
    paths = write_outputs(aggregate(spec, [], "paper"), tmp_path / "out")
    for ext in ("md", "csv", "tex"):
        text = paths[ext].read_text()
        assert "Scoring: pooled confusion counts, at the network input size, threshold 0.5" in text, ext
        assert "Protocol: the best-validation-Dice checkpoint, scored on the test subset" in text, ext
        assert "Deviation, Wide: trained 1 epoch, paper 20" in text, ext
        assert "Cited, Other [1]: the paper prints this row from Al-Masni et al. (2018)" in text, ext
    with open(paths["csv"], newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert {r["deviation"] for r in rows if r["row"] == "wide"} == {"trained 1 epoch, paper 20"}
    assert {r["status"] for r in rows if r["row"] == "other"} == {"cited"}


def test_extra_metrics_and_per_image_aggregation(tmp_path, capsys):
    spec = with_options(find_spec("lanet-table5"), "jsc_th,dice_per_image,iou_per_image,mean_iou")
    assert spec.metrics[-4:] == ["jsc_th", "dice_per_image", "iou_per_image", "mean_iou"]
    assert [spec.scoring.metric_key(m) for m in ("dice", "jsc_th", "mean_iou")] == ["dice", "thresholded_jaccard",
                                                                                    "mean_iou"]
    per_image = find_spec("slsnet-table3").scoring
    assert [per_image.metric_key(m) for m in ("dice", "iou", "accuracy")] == ["dice_per_image", "iou_per_image",
                                                                             "accuracy_per_image"]
    with pytest.raises(SpecError, match="--metrics: unknown metric 'dicee'"):
        with_options(find_spec("lanet-table5"), "dicee")
    with pytest.raises(SpecError, match=r"slsnet-table3.yaml: scoring.aggregation: per-image, but metric 'mean_iou'"):
        with_options(find_spec("slsnet-table3"), "mean_iou")
    assert main(["reproduce", "lanet-table5", "--metrics", "dicee"]) == 2
    assert "--metrics: unknown metric" in capsys.readouterr().out
    cross = with_options(find_spec("lanet-table9"), resolution="original")
    jobs = runner.plan_jobs(cross, "smoke", tmp_path)
    assert {j.result_section for j in jobs if j.kind == "test"} == {"test_original_size"}
    network = runner.plan_jobs(find_spec("lanet-table9"), "smoke", tmp_path)
    assert not {j.hash for j in jobs} & {j.hash for j in network}  # another convention, other results


# -- LANET: weight decay 1e-4, the final-epoch network ------------------------------------------------
def test_lanet_tables_use_weight_decay_and_the_final_epoch_network(tmp_path):
    recipe = yaml.safe_load((REPO_ROOT / "experiments/lanet/ham10000.yaml").read_text())
    args = recipe["model"]["init_args"]
    assert (args["optimizer"], args["lr"], args["momentum"], args["weight_decay"]) == ("sgd", 0.01, 0.9, 1e-4)
    for spec in load_all():
        if spec.id.startswith("lanet-") and spec.scoring is not None:
            assert spec.protocol.checkpoint == "final-epoch", spec.id
    jobs = runner.plan_jobs(find_spec("lanet-5fold"), "smoke", tmp_path)
    assert {(j.checkpoint, j.stage) for j in jobs} == {("final-epoch", "val")}
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    for name in ("best-002.ckpt", "last.ckpt"):
        (ckpts / name).write_bytes(b"x")
    assert runner.scored_checkpoint(tmp_path / "run", "final-epoch").name == "last.ckpt"
    assert runner.scored_checkpoint(tmp_path / "run", "best-val-dice").name == "best-002.ckpt"
    with pytest.raises(runner.JobError, match="no lowest-val-loss"):
        runner.scored_checkpoint(tmp_path / "run", "lowest-val-loss")


# -- SLSNet Table 4: the paper's split ---------------------------------------------------------------
def test_slsnet_table4_split_on_the_isic2018_layout(tmp_path):
    from lesion_lightning.data.readers import scan_dataset
    from lesion_lightning.data.splits import make_split

    spec = find_spec("slsnet-table4")
    assert spec.split == "80-20" and spec.row("unet").cited_from.startswith("Al-Masni")
    assert "unet" not in {j.row for j in runner.plan_jobs(spec, "smoke", tmp_path)}  # cited, not trained
    root = REPO_ROOT.parent / "shared" / "data" / "isic2018_128"
    if not root.is_dir():
        pytest.skip(f"real ISIC 2018 (128 px) not found at {root}")
    records = scan_dataset("isic2018", root).records
    manifest = make_split(records, "80-20", seed=42, dataset="isic2018")
    assert manifest.sizes() == {"train": 2075, "val": 519, "test": 100}
    subset_of = {r.id: r.subset for r in records}
    assert {subset_of[i] for i in manifest.subsets["train"] + manifest.subsets["val"]} == {"train"}
    assert {subset_of[i] for i in manifest.subsets["test"]} == {"val"}


# -- U-Net of Aksoy: two-class mean IoU and Eq. 2 Dice -------------------------------------------------
def test_aksoy_two_class_iou_and_eq2_dice_against_a_hand_computation():
    spec = find_spec("unet-aksoy-headline")
    assert (spec.protocol.checkpoint, spec.protocol.scored_on, spec.scoring.classes) == ("final-epoch", "val",
                                                                                        "two-class-mean")
    assert spec.row("unet_aksoy").paper["mean_iou"].printed == "0.82"
    probs = torch.tensor([[[0.9, 0.8], [0.4, 0.2]], [[0.6, 0.1], [0.7, 0.3]]])
    truth = torch.tensor([[[1, 1], [1, 0]], [[0, 0], [1, 0]]])
    metric = SegmentationMetrics()
    metric.update(probs, truth)
    values = metric.compute()
    # thresholded at 0.5: image 1 tp 2, fn 1, tn 1; image 2 tp 1, fp 1, tn 2 -> tp 3, fp 1, fn 1, tn 3
    lesion_iou, background_iou = 3 / (3 + 1 + 1), 3 / (3 + 1 + 1)
    assert float(values["iou"]) == pytest.approx(lesion_iou)
    assert float(values["mean_iou"]) == pytest.approx((lesion_iou + background_iou) / 2)
    # Eq. 2 on the probabilities: intersection 0.9 + 0.8 + 0.4 + 0.7 = 2.8; sums 4 + 4.0; smooth 1
    assert float(values["dice_eq2"]) == pytest.approx((2 * 2.8 + 1) / (4 + 4.0 + 1))
    assert float(values["dice"]) == pytest.approx(6 / 8)


# -- SCSONet: the lowest-validation-loss checkpoint ----------------------------------------------------
def test_lowest_validation_loss_checkpoint_is_kept_and_scored(tmp_path):
    spec_path = tmp_path / "tiny-loss.yaml"
    spec_path.write_text(TINY.replace("seeds: 2,", "seeds: 1,").replace("epochs: 1,", "epochs: 2,")
                         .replace("proposed: wide", "proposed: wide\nprotocol: {checkpoint: lowest-val-loss}")
                         .replace("metrics: [", "cost_size: 48\nmetrics: [params_m, gflops, "))
    for table in ("scsonet-table1", "scsonet-table2", "scsonet-table3"):
        scs = find_spec(table)
        assert scs.protocol.checkpoint == "lowest-val-loss" and "0-255" in scs.notes and scs.cost_size == 256
        assert {j.cost_size for j in runner.plan_jobs(scs, "smoke", tmp_path)} == {256}  # at 256 whatever the profile
    jobs = runner.plan_jobs(load_spec(spec_path), "smoke", tmp_path, rows=["narrow"])
    assert runner.run_jobs(jobs, table=load_spec(spec_path).conventions()) == {"ran": 1, "skipped": 0, "failed": 0}
    run_dir = Path(jobs[0].run_dir)
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("lowest-val-loss-*.ckpt"))
    assert len(kept) == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["checkpoint"] == f"checkpoints/{kept[0]}"
    assert metrics["table"]["protocol"]["checkpoint"] == "lowest-val-loss"
    assert metrics["table"]["scoring"]["aggregation"] == "pooled"
    # params and GFLOPs at the table's cost_size (48), not at the 32 px it trained at
    expected = runner._cost_metrics("simple_unet", 48, {"base_width": 4})
    cells = aggregate(load_spec(spec_path), jobs, "smoke").cells[("", "narrow")]
    assert cells["gflops"].mean == pytest.approx(expected["gflops"]) and metrics["cost"]["size"] == 48
    assert cells["params_m"].mean == pytest.approx(expected["params_m"])
    assert expected["gflops"] != pytest.approx(runner._cost_metrics("simple_unet", 32, {"base_width": 4})["gflops"])


# -- original-size scoring against the official ISIC scorer ------------------------------------------
def _isic_scores(gt_dir: Path, pred_dir: Path) -> dict[str, float]:
    scoring = pytest.importorskip("isic_challenge_scoring.segmentation")
    official = scoring.SegmentationScore.from_dir(gt_dir, pred_dir).macro_average
    return {k: float(official[k]) for k in ("dice", "jaccard", "threshold_jaccard", "accuracy")}


def _assert_matches_scorer(values: dict[str, float], official: dict[str, float]) -> None:
    for theirs, ours in (("dice", "dice_per_image"), ("jaccard", "iou_per_image"),
                         ("threshold_jaccard", "thresholded_jaccard"), ("accuracy", "accuracy_per_image")):
        assert values[ours] == pytest.approx(official[theirs], abs=1e-6), theirs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return fit_tiny_run(tmp_path_factory.mktemp("tiny"))


def test_test_command_scores_at_original_size_like_the_isic_scorer(tiny_run, tmp_path):
    ckpt = sorted((tiny_run / "checkpoints").glob("best*.ckpt"))[-1]
    main(["test", "--config", str(tiny_run / "config.yaml"), f"--ckpt_path={ckpt}", "--logger=none",
          "--score_resolution=original", "--trainer.enable_progress_bar=false"])
    stored = json.loads((tiny_run / "metrics.json").read_text())["test_original_size"]
    from lesion_lightning.evaluation.original_size import score_subset_original_size

    values, rows = score_subset_original_size(ckpt, "test", save_dir=tmp_path / "scored")
    assert stored["dice"] == pytest.approx(values["dice"]) and stored["num_images"] == len(rows) >= 1
    ham = sample_dataset_root("ham10000")
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for row in rows:  # the dataset's own full-size mask files, not ours
        (src,) = ham.rglob(f"{row['id']}_segmentation.png")
        shutil.copy(src, gt_dir / src.name)
        assert np.asarray(Image.open(src)).shape[:2] == (450, 600)  # full size
    _assert_matches_scorer(values, _isic_scores(gt_dir, tmp_path / "scored" / "pred"))


def test_cross_eval_original_size_on_full_size_isic2017_like_the_isic_scorer(tiny_run, tmp_path):
    from lesion_lightning.evaluation.cross_dataset import cross_evaluate
    from lesion_lightning.evaluation.cross_options import CrossEvalOptions

    root = sample_dataset_root("isic2017")
    if root is None:
        pytest.skip("real ISIC 2017 full-size sample not found")
    doc = cross_evaluate(tiny_run, CrossEvalOptions(datasets=["isic2017"], resolution="original"),
                         save_predictions_to=tmp_path / "pred")
    (entry,) = doc["results"]
    (gt_dir,) = [p for p in root.rglob("*GroundTruth*") if p.is_dir()]
    values = {**{f"{k}_per_image": v for k, v in entry["all"]["per_image"].items()},
              "thresholded_jaccard": entry["all"]["per_image"]["thresholded_jaccard"]}
    _assert_matches_scorer(values, _isic_scores(gt_dir, tmp_path / "pred" / "isic2017" / "pred"))


# -- MedLiteNet: TTA and the ensemble row are run -----------------------------------------------------
def test_medlitenet_plan_scores_with_tta_and_ensembles_the_variants(tmp_path):
    spec = find_spec("medlitenet-headline")
    assert not any(r.paper_only for r in spec.rows)
    jobs = runner.plan_jobs(spec, "smoke", tmp_path, seeds=2)
    members = {(j.row, j.seed): j.run_dir for j in jobs if j.kind == "train"}
    ensembles = [j for j in jobs if j.kind == "ensemble"]
    assert [j.seed for j in ensembles] == [42, 43]
    for job in ensembles:
        assert job.tta and "experiments/medlitenet/ensemble.yaml" in job.configs[-1]
        assert job.members == [members[(row, job.seed)] for row in ("medlitenet", "medlitenet_b", "medlitenet_c")]
        assert job.needs == job.members
    assert {j.row for j in jobs if j.tta} == {"medlitenet", "medlitenet_ensemble"}
    assert runner._scoring_options(ensembles[0]) == ["--score_resolution=network", "--tta=true"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.path.read_text().replace("members: [medlitenet, medlitenet_b, medlitenet_c]",
                                                 "members: [medlitenet, medlitenet_x]"))
    with pytest.raises(SpecError, match=r"bad.yaml: rows\[3\].members: 'medlitenet_x' is not a row id"):
        load_spec(bad)


@pytest.mark.slow
def test_medlitenet_tta_and_ensemble_rows_run_in_the_smoke_profile(tmp_path):
    spec = find_spec("medlitenet-headline")
    jobs = runner.plan_jobs(spec, "smoke", tmp_path, seeds=1, overrides={"epochs": 1, "limit_batches": 1})
    assert runner.run_jobs(jobs, keep_checkpoints=False) == {"ran": 4, "skipped": 0, "failed": 0}
    ensemble = next(j for j in jobs if j.kind == "ensemble")
    run_dir = Path(ensemble.run_dir)
    info = json.loads((run_dir / "ensemble.json").read_text())
    assert len(info["members"]) == 3 and "tta: true" in (run_dir / "config_test.yaml").read_text()
    for job in jobs[:3]:  # members' checkpoints released once the ensemble is scored
        assert not list((Path(job.run_dir) / "checkpoints").glob("*.ckpt"))
    cells = aggregate(spec, jobs, "smoke").cells
    assert cells[("", "medlitenet_ensemble")]["dice"].n == 1 and cells[("", "medlitenet")]["dice"].n == 1
    assert "tta: true" in (Path(jobs[0].run_dir) / "config_test.yaml").read_text()


def _recipe_folder(preset: Path) -> str:
    """The folder of the recipe a preset composes on (following `config:`), e.g. `lanet`."""
    data = yaml.safe_load(preset.read_text()) or {}
    base = data.get("config")
    return _recipe_folder((preset.parent / base).resolve()) if base else preset.parent.name


def test_no_trained_row_uses_another_papers_recipe_without_saying_why():
    own = {"lanet": "lanet", "slsnet": "slsnet", "scsonet": "scsonet", "medlitenet": "medlitenet",
           "unet-aksoy": "unet_aksoy"}
    for spec in load_all():
        paper = own[next(p for p in own if spec.id.startswith(p))]
        for row in spec.rows:
            if row.preset and not row.paper_only:
                recipe = _recipe_folder(REPO_ROOT / row.preset)
                assert recipe == paper or row.deviation, f"{spec.id} {row.id}: {recipe} recipe"
