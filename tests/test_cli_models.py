"""`lesion-lightning models` and `lesion-lightning complexity`, run in-process through cli.main."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lesion_lightning.cli import main
from lesion_lightning.commands import models as models_cmd
from lesion_lightning.models import create_model, list_models, registry
from lesion_lightning.utils.complexity import count_flops, count_params


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_models_json_lists_the_requested_models(capsys: pytest.CaptureFixture) -> None:
    rc, out, _ = _run(capsys, "models", "--json", "--names", "lanet,unet_aksoy")
    assert rc == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["lanet", "unet_aksoy"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["lanet"]["params"] == 846_786 and by_name["lanet"]["input_size"] == [3, 224, 224]
    assert by_name["lanet"]["paper"]["params"] == 846_786 and by_name["lanet"]["paper"]["gflops"] == 4.22
    aksoy = by_name["unet_aksoy"]
    assert aksoy["input_size"] == [3, 128, 128] and aksoy["preset"] == "unet_aksoy"
    assert aksoy["params"] == count_params(create_model("unet_aksoy"))
    assert aksoy["flops"] == count_flops(create_model("unet_aksoy"), (3, 128, 128))
    for r in rows:
        assert r["macs"] * 2 == r["flops"]
        assert {"name", "params", "input_size", "macs", "flops", "paper"} <= set(r)


def test_models_table_shows_ours_beside_the_papers(capsys: pytest.CaptureFixture) -> None:
    rc, out, _ = _run(capsys, "models", "--names", "lanet,unet_aksoy")
    assert rc == 0
    line = next(ln for ln in out.splitlines() if "lanet" in ln and "224x224" in ln)
    assert "0.847" in line and "3.514" in line and "4.220" in line  # params, our GFLOPs, the paper's GFLOPs
    # Aksoy's paper prints no counts: the authors' code's figures are shown, marked as such.
    line = next(ln for ln in out.splitlines() if "unet_aksoy" in ln and "128x128" in ln)
    assert "7.697 (code)" in line and "18.400 (code)" in line


def test_models_iterates_the_whole_registry_by_default() -> None:
    assert models_cmd._select(None) == list_models()
    assert {"lanet", "unet_aksoy", "unet", "unet3plus", "unetplusplus", "deeplabv3plus"} <= set(list_models())


def test_models_rejects_unknown_names(capsys: pytest.CaptureFixture) -> None:
    rc, out, err = _run(capsys, "models", "--names", "lanet,not_a_model")
    assert rc == 2 and out == ""
    assert "--names" in err and "not_a_model" in err


def test_models_reports_a_broken_model_and_keeps_going(capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("deliberately broken")

    monkeypatch.setitem(registry._REGISTRY, "zz_broken", registry.ModelSpec(
        name="zz_broken", builder=Broken, input_size=(3, 8, 8), preset="none"))
    rc, out, err = _run(capsys, "models", "--json", "--names", "zz_broken,lanet")
    assert rc == 1
    rows = {r["name"]: r for r in json.loads(out)}
    assert "deliberately broken" in rows["zz_broken"]["error"] and rows["zz_broken"]["params"] is None
    assert rows["lanet"]["params"] == 846_786
    assert "zz_broken" in err


def test_complexity_json_matches_the_counter(capsys: pytest.CaptureFixture) -> None:
    rc, out, _ = _run(capsys, "complexity", "lanet", "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["params"] == res["trainable_params"] == 846_786
    assert res["input_size"] == [3, 224, 224]
    assert res["memory_mb"] == pytest.approx(846_786 * 4 / 1024**2)
    assert res["flops"] == count_flops(create_model("lanet"), (3, 224, 224)) == 2 * res["macs"]


def test_complexity_size_options_scale_the_flops(capsys: pytest.CaptureFixture) -> None:
    _, out_sq, _ = _run(capsys, "complexity", "lanet", "--size", "64", "--json")
    _, out_hw, _ = _run(capsys, "complexity", "lanet", "--size", "64", "96", "--json")
    square, rect = json.loads(out_sq), json.loads(out_hw)
    assert square["input_size"] == [3, 64, 64] and rect["input_size"] == [3, 64, 96]
    # Every LANET layer is a 'same' convolution: FLOPs grow exactly with the pixel count.
    assert rect["flops"] * 2 == square["flops"] * 3


def test_complexity_passes_model_arguments(capsys: pytest.CaptureFixture) -> None:
    rc, out, _ = _run(capsys, "complexity", "lanet", "--size", "32", "--arg", "spatial_conv=true", "--json")
    assert rc == 0
    assert json.loads(out)["params"] == 846_786 + 4 * 99


def test_complexity_table(capsys: pytest.CaptureFixture) -> None:
    rc, out, _ = _run(capsys, "complexity", "unet_aksoy", "--size", "64")
    assert rc == 0
    assert "7,697,345" in out and "MB" in out and "FLOPs" in out


def test_complexity_bad_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["complexity", "lanet", "--size", "1", "2", "3"])
    assert exc.value.code == 2
    assert "--size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["complexity", "lanet", "--size", "0"])
    assert "positive" in capsys.readouterr().err
    rc, _, err = _run(capsys, "complexity", "no_such_model")
    assert rc == 2 and "no_such_model" in err
    rc, _, err = _run(capsys, "complexity", "lanet", "--arg", "bogus=1")
    assert rc == 2 and "--arg" in err and "bogus" in err


def test_one_cost_report_behind_models_complexity_bench_and_the_runner(capsys: pytest.CaptureFixture) -> None:
    """`models`, `complexity`, `bench` and the table runner report the same counts (one measuring function)."""
    from lesion_lightning.evaluation.bench import bench_model
    from lesion_lightning.tables.runner import _cost_metrics
    from lesion_lightning.utils.complexity import LatencySettings, measure_registered

    _, out, _ = _run(capsys, "models", "--json", "--names", "egeunet")
    (row,) = json.loads(out)
    _, out, _ = _run(capsys, "complexity", "egeunet", "--json")
    single = json.loads(out)
    size = row["input_size"][1]
    table = _cost_metrics("egeunet", size, {}, timing=True)
    (bench,) = bench_model("egeunet", [size], LatencySettings(repeats=2, warmup=0))
    report = measure_registered("egeunet", latency=LatencySettings(repeats=2, warmup=0))
    assert row["params"] == single["params"] == bench["params"] == table["params"] == report.params
    assert row["macs"] == single["macs"] == bench["macs"] == round(table["macs_g"] * 1e9) == report.macs
    assert single["layers"] == table["layers"] == report.layers > 0
    assert len(report.latency.times_ms) == 2 and table["ms"] > 0 and bench["median_ms"] > 0


def test_models_reads_cached_costs_until_the_model_code_changes(capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from lesion_lightning.utils import complexity, cost_cache

    monkeypatch.setenv("LESION_LIGHTNING_CACHE", str(tmp_path))
    calls: list[str] = []
    real = complexity.measure_registered

    def counting(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(complexity, "measure_registered", counting)
    argv = ("models", "--json", "--names", "lanet,egeunet")
    first = _run(capsys, *argv)
    assert first[0] == 0 and calls == ["lanet", "egeunet"]
    assert (tmp_path / cost_cache.CACHE_FILE).is_file()
    assert _run(capsys, *argv)[1] == first[1] and calls == ["lanet", "egeunet"]  # read, not measured
    assert _run(capsys, *argv, "--no-cache")[1] == first[1] and len(calls) == 4
    monkeypatch.setattr(cost_cache, "source_fingerprint", lambda: "edited model code")
    assert _run(capsys, *argv)[1] == first[1] and len(calls) == 6  # stale cache: measured again
