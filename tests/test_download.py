"""Dataset download against a local HTTP server: layout, resume, verification, extraction guard."""

from __future__ import annotations

import argparse
import hashlib
import re
import stat
import subprocess
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from lesion_lightning.commands import download as download_command
from lesion_lightning.data import download as dl
from lesion_lightning.data.datasets import get_dataset_spec
from lesion_lightning.data.datasets import registry as dataset_registry
from lesion_lightning.data.datasets._isic import isic_archive
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.io import load_image, load_mask
from lesion_lightning.data.readers import read_dataset
from lesion_lightning.data.synthetic import write_dataset


class _Server:
    """Serves files from a folder with HTTP Range support; records (path, Range header) per request."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[tuple[str, str | None]] = []
        self.ignore_range = False
        self.cut_once: dict[str, int] = {}  # file name -> bytes sent before dropping the connection once
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                path = server.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_once.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _zip_folder(folder: Path, zip_path: Path, *, with_top: bool = True) -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                arc = p.relative_to(folder.parent if with_top else folder)
                zf.write(p, str(arc))
    return zip_path


@pytest.fixture(scope="module")
def isic_served(tmp_path_factory) -> Path:
    """Official ISIC 2018 zips (train + val) of a small synthetic set."""
    src = write_dataset(tmp_path_factory.mktemp("src"), "isic2018", seed=0, image_size=(32, 40),
                        subsets={"train": 3, "val": 2})
    served = tmp_path_factory.mktemp("served")
    for folder in src.iterdir():
        _zip_folder(folder, served / f"{folder.name}.zip")
    return served


def test_isic2018_download_and_extract(tmp_path, isic_served):
    root = tmp_path / "isic2018"
    with _Server(isic_served) as server:
        assert dl.download("isic2018", root, base_url=server.url, progress=False, subsets=["train", "val"]) == root
        first = list(server.requests)
        dl.download("isic2018", root, base_url=server.url, progress=False, subsets=["train", "val"])
        assert server.requests == first  # extracted archives are skipped (markers)
    assert {name for name, _ in first} == {f"{a.filename}" for a in dl.archives("isic2018") if a.subset != "test"}
    images = sorted((root / "ISIC2018_Task1-2_Training_Input").glob("ISIC_*.jpg"))
    assert len(images) == 3 and (root / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").is_file()
    gt = root / "ISIC2018_Task1_Validation_GroundTruth"
    assert len(list(gt.glob("*_segmentation.png"))) == 2
    assert load_mask(gt / "ISIC_0000003_segmentation.png", load_image(
        root / "ISIC2018_Task1-2_Validation_Input" / "ISIC_0000003.jpg").shape[:2]).any()
    assert not (root / "ISIC2018_Task1-2_Training_Input" / "ISIC2018_Task1-2_Training_Input").exists()


def test_ham10000_flat_zips_metadata_and_cli(tmp_path):
    src = write_dataset(tmp_path / "src", "ham10000", 4, seed=1, image_size=(30, 40))
    served = tmp_path / "served"
    served.mkdir()
    for part in ("HAM10000_images_part_1", "HAM10000_images_part_2"):
        _zip_folder(src / part, served / f"{part}.zip", with_top=False)  # the real image zips are flat
    _zip_folder(src / "HAM10000_segmentations_lesion_tschandl", served / "HAM10000_segmentations_lesion_tschandl.zip")
    (served / "HAM10000_metadata.csv").write_bytes((src / "HAM10000_metadata.csv").read_bytes())
    root = tmp_path / "ham"
    parser = argparse.ArgumentParser()
    download_command.configure(parser)
    with _Server(served) as server:
        args = parser.parse_args(["ham10000", "--root", str(root), "--base-url", server.url, "--no-progress"])
        assert download_command.run(args) == 0
    for rel in ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_segmentations_lesion_tschandl"):
        assert sorted(p.name for p in (root / rel).iterdir()) == sorted(p.name for p in (src / rel).iterdir())
    assert (root / "HAM10000_metadata.csv").read_bytes() == (src / "HAM10000_metadata.csv").read_bytes()


def test_list_option(capsys):
    parser = argparse.ArgumentParser()
    download_command.configure(parser)
    assert download_command.run(parser.parse_args(["isic2017", "--root", "unused", "--list"])) == 0
    out = capsys.readouterr().out
    assert "https://isic-challenge-data.s3.amazonaws.com/2017/ISIC-2017_Test_v2_Part1_GroundTruth.zip" in out


def _one_archive(monkeypatch, served: Path, **fields) -> dl.Archive:
    name = "ISIC2018_Task1_Validation_GroundTruth"
    archive = replace(isic_archive("2018", name, "val"), **fields)
    spec = get_dataset_spec("isic2018")
    monkeypatch.setitem(dataset_registry._REGISTRY, "isic2018", replace(spec, archives=(archive,)))
    return archive


def test_resume_from_partial_file(tmp_path, isic_served, monkeypatch):
    data = (isic_served / "ISIC2018_Task1_Validation_GroundTruth.zip").read_bytes()
    archive = _one_archive(monkeypatch, isic_served, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    root = tmp_path / "r"
    part = root / ".downloads" / f"{archive.filename}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 2])
    with _Server(isic_served) as server:
        dl.download("isic2018", root, base_url=server.url, progress=False)
    assert server.requests == [(archive.filename, f"bytes={len(data) // 2}-")]
    assert (root / ".downloads" / archive.filename).read_bytes() == data and not part.exists()
    assert len(list((root / "ISIC2018_Task1_Validation_GroundTruth").glob("*.png"))) == 2


def test_dropped_connection_is_resumed_and_range_ignoring_server_restarts(tmp_path, isic_served, monkeypatch):
    data = (isic_served / "ISIC2018_Task1_Validation_GroundTruth.zip").read_bytes()
    archive = _one_archive(monkeypatch, isic_served, sha256=hashlib.sha256(data).hexdigest())
    with _Server(isic_served) as server:
        server.cut_once[archive.filename] = 100
        dl.download("isic2018", tmp_path / "a", base_url=server.url, progress=False)
        assert server.requests == [(archive.filename, None), (archive.filename, "bytes=100-")]
        # A server without Range support answers 200: the stale partial data is discarded.
        part = tmp_path / "b" / ".downloads" / f"{archive.filename}.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"stale bytes from an older file")
        server.ignore_range = True
        dl.download("isic2018", tmp_path / "b", base_url=server.url, progress=False)
    assert (tmp_path / "b" / ".downloads" / archive.filename).read_bytes() == data


@pytest.mark.parametrize("field", ["sha256", "size"])
def test_checksum_or_size_mismatch(tmp_path, isic_served, monkeypatch, field):
    archive = _one_archive(monkeypatch, isic_served, **{field: "0" * 64 if field == "sha256" else 12345})
    root = tmp_path / "r"
    with _Server(isic_served) as server, pytest.raises(DataError, match=f"{field}.*mismatch") as err:
        dl.download("isic2018", root, base_url=server.url, progress=False)
    assert archive.filename in str(err.value)
    assert not list((root / ".downloads").iterdir())  # bad data removed, nothing extracted
    assert not (root / "ISIC2018_Task1_Validation_GroundTruth").exists()


def _malicious_zip(path: Path, member: str, *, symlink_to: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ISIC2018_Task1_Validation_GroundTruth/ok.txt", "fine")
        if symlink_to is not None:
            info = zipfile.ZipInfo(member)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, symlink_to)
        else:
            zf.writestr(zipfile.ZipInfo(member), "pwned")
    return path


@pytest.mark.parametrize("member,symlink", [
    ("../evil.txt", None),
    ("ISIC2018_Task1_Validation_GroundTruth/../../evil.txt", None),
    ("/tmp/abs_evil_lesion_lightning.txt", None),
    ("ISIC2018_Task1_Validation_GroundTruth/link", "../../../evil.txt"),
])
def test_malicious_zip_refused_before_writing(tmp_path, monkeypatch, member, symlink):
    served = tmp_path / "served"
    served.mkdir()
    archive = _one_archive(monkeypatch, served)
    _malicious_zip(served / archive.filename, member, symlink_to=symlink)
    root = tmp_path / "deep" / "root"
    with _Server(served) as server, pytest.raises(DataError, match="refusing to extract member") as err:
        dl.download("isic2018", root, base_url=server.url, progress=False)
    assert member in str(err.value)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not Path("/tmp/abs_evil_lesion_lightning.txt").exists()
    assert sorted(p.name for p in root.iterdir()) == [".downloads"]  # not even the safe member was written
    assert not list((root / ".downloads").glob("*.extracted"))


def test_http_error_names_url(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    _one_archive(monkeypatch, served)
    with _Server(served) as server, pytest.raises(DataError, match="HTTP 404") as err:
        dl.download("isic2018", tmp_path / "r", base_url=server.url, progress=False)
    assert server.url in str(err.value)


def test_rar_without_extractor_explains(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    (served / "PH2Dataset.rar").write_bytes(b"Rar!\x1a\x07\x00" + bytes(np.arange(64, dtype=np.uint8)))
    monkeypatch.setattr(dl.shutil, "which", lambda name: None)
    with _Server(served) as server, pytest.raises(DataError, match="extract it by hand"):
        dl.download("ph2", tmp_path / "ph2", base_url=server.url, progress=False)
    assert (tmp_path / "ph2" / ".downloads" / "PH2Dataset.rar").is_file()  # kept for a manual extraction


def test_unknown_dataset():
    with pytest.raises(ValueError, match="isic2018"):
        dl.download("isic2016", "unused")


def test_zip_extraction_never_replaces_a_folder_it_did_not_create(tmp_path, isic_served):
    root = tmp_path / "r"
    mine = root / "ISIC2018_Task1-2_Validation_Input"
    mine.mkdir(parents=True)
    (mine / "ISIC_0000003.jpg").write_bytes(b"the user's own file")
    with _Server(isic_served) as server, pytest.raises(DataError, match="not created by extracting") as exc:
        dl.download("isic2018", root, base_url=server.url, progress=False, subsets=["val"])
    assert exc.value.file == str(mine)
    assert (mine / "ISIC_0000003.jpg").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in mine.iterdir()) == ["ISIC_0000003.jpg"]
    # Extracting again what this download created (marker lost) is allowed.
    other = tmp_path / "s"
    with _Server(isic_served) as server:
        dl.download("isic2018", other, base_url=server.url, progress=False, subsets=["val"])
        for marker in (other / ".downloads").glob("*.extracted"):
            marker.unlink()
        dl.download("isic2018", other, base_url=server.url, progress=False, subsets=["val"])
    assert len(read_dataset("isic2018", other)) == 2


def test_rar_extraction_never_replaces_a_folder_it_did_not_create(tmp_path, monkeypatch):
    root = tmp_path / "ph2"
    (root / "PH2Dataset").mkdir(parents=True)
    (root / "PH2Dataset" / "notes.txt").write_text("keep me")
    rar = tmp_path / "PH2Dataset.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00")

    def fake_run(cmd, **kwargs):  # an extractor that lists one member and writes it into the staging folder
        if cmd[1] == "x":
            staging = Path(cmd[-1])
            (staging / "PH2Dataset").mkdir(parents=True)
            (staging / "PH2Dataset" / "PH2_dataset.txt").write_text("Name\tClinical Diagnosis\n")
        return subprocess.CompletedProcess(cmd, 0, stdout="PH2Dataset/PH2_dataset.txt\n", stderr="")

    monkeypatch.setattr(dl, "_rar_tool", lambda: ["unrar", "lb"])
    monkeypatch.setattr(dl.subprocess, "run", fake_run)
    with pytest.raises(DataError, match="not created by extracting PH2Dataset.rar"):
        dl.extract_archive(rar, root)
    assert (root / "PH2Dataset" / "notes.txt").read_text() == "keep me"
    assert not (root / "PH2Dataset" / "PH2_dataset.txt").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    dl.extract_archive(rar, fresh)
    dl.extract_archive(rar, fresh)  # a rerun replaces only what the first run created
    assert (fresh / "PH2Dataset" / "PH2_dataset.txt").is_file()
