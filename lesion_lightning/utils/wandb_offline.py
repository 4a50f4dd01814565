"""Read what an offline W&B run recorded, without a server.

wandb >= 0.31 writes an offline run only as `wandb/offline-run-<time>-<id>/run-<id>.wandb` (plus
media under `files/`): no summary or config JSON, and the old Python `datastore` reader is gone.
The record file, written by wandb's Go core (core/internal/stream/store.go, core/pkg/leveldb), is:

* a 7-byte file header: b":W&B", magic 0xBEE1 (uint16 little-endian), version 0;
* then a LevelDB-log-like stream cut into 32 KiB blocks (the header occupies the start of block 0).
  Each block holds chunks `crc32 (uint32 LE) | length (uint16 LE) | type (uint8) | payload`; the
  CRC is the standard IEEE CRC-32 (zlib.crc32) of the type byte followed by the payload. Chunks never
  cross a block boundary; fewer than 7 bytes left at the end of a block are zero padding. Types:
  1 full, 2 first, 3 middle, 4 last (a record split over blocks is first + middle* + last).
* each reassembled record is a serialized `wandb.proto.wandb_internal_pb2.Record`.

Config, summary and history items carry either `key` or a `nested_key` path; values are JSON
(history items may also use typed fields). Summary records are incremental updates: the final
summary is their accumulation.
"""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER_IDENT = b":W&B"
HEADER_MAGIC = 0xBEE1
HEADER_VERSION = 0
HEADER_LEN = 7
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER_LEN = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbRecordError(ValueError):
    """A `.wandb` file that is not a W&B record file or is corrupt (message names the file and offset)."""


@dataclass
class OfflineRun:
    """What an offline run recorded. `config` and `summary` values are decoded JSON; `history` has one
    dict per logged step; `files` are paths relative to `files_dir` (media, requirements.txt, ...)."""

    path: Path
    run_id: str | None = None
    project: str | None = None
    entity: str | None = None
    name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    exit_code: int | None = None
    finished: bool = False  # an exit record was written (run.finish() ran)
    truncated: bool = False  # the file ends inside a record (the process died or is still writing)
    record_counts: dict[str, int] = field(default_factory=dict)

    @property
    def files_dir(self) -> Path:
        return self.path.parent / "files"

    def history_of(self, key: str) -> list[Any]:
        """The values of one history key, in step order, skipping steps that did not log it."""
        return [row[key] for row in self.history if key in row]


def _checked_bytes(path: Path) -> bytes:
    """The file's bytes, after checking its W&B record-file header."""
    data = path.read_bytes()
    if len(data) < HEADER_LEN:
        raise WandbRecordError(f"{path}: too short to be a W&B record file ({len(data)} bytes)")
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER_LEN])
    if ident != HEADER_IDENT or magic != HEADER_MAGIC:
        raise WandbRecordError(f"{path}: not a W&B record file (header {data[:HEADER_LEN]!r})")
    if version != HEADER_VERSION:
        raise WandbRecordError(f"{path}: unsupported W&B record file version {version} (expected {HEADER_VERSION})")
    return data


def iter_records(path: str | Path) -> Any:
    """Yield the `Record` protobufs of a `.wandb` file in order (see the module docstring for the framing).

    Sets the generator's return value to True when the file ends inside a record.
    """
    from wandb.proto import wandb_internal_pb2

    path = Path(path)
    data = _checked_bytes(path)
    pos = HEADER_LEN
    pending: bytearray | None = None
    while pos < len(data):
        left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER_LEN:  # block trailer: zero padding
            pos += left_in_block
            continue
        if pos + CHUNK_HEADER_LEN > len(data):
            return True
        crc, length, ctype = struct.unpack("<IHB", data[pos:pos + CHUNK_HEADER_LEN])
        if crc == 0 and length == 0 and ctype == 0:  # zero-filled rest of block
            pos += left_in_block
            continue
        start = pos + CHUNK_HEADER_LEN
        end = start + length
        if length > left_in_block - CHUNK_HEADER_LEN:
            raise WandbRecordError(f"{path}: chunk at offset {pos} overflows its 32 KiB block (length {length})")
        if end > len(data):
            return True  # the writer stopped mid-chunk
        payload = data[start:end]
        if zlib.crc32(payload, zlib.crc32(bytes([ctype]))) & 0xFFFFFFFF != crc:
            raise WandbRecordError(f"{path}: checksum mismatch in the chunk at offset {pos}")
        pos = end
        if ctype == FULL:
            complete = bytes(payload)
        elif ctype == FIRST:
            pending = bytearray(payload)
            continue
        elif ctype in (MIDDLE, LAST):
            if pending is None:
                raise WandbRecordError(f"{path}: chunk of type {ctype} at offset {start - CHUNK_HEADER_LEN} "
                                       "continues no record")
            pending += payload
            if ctype == MIDDLE:
                continue
            complete, pending = bytes(pending), None
        else:
            raise WandbRecordError(f"{path}: unknown chunk type {ctype} at offset {start - CHUNK_HEADER_LEN}")
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(complete)
        except Exception as err:  # protobuf's DecodeError
            raise WandbRecordError(f"{path}: record ending at offset {pos} is not a wandb Record: {err}") from err
        yield record
    return pending is not None


def _item_path(item: Any) -> list[str]:
    return list(item.nested_key) if len(item.nested_key) else [item.key]


def _set(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        child = target.get(k)
        if not isinstance(child, dict):
            child = target[k] = {}
        target = child
    target[keys[-1]] = value


def _remove(target: dict[str, Any], keys: list[str]) -> None:
    for k in keys[:-1]:
        target = target.get(k)
        if not isinstance(target, dict):
            return
    target.pop(keys[-1], None)


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


def _history_value(item: Any) -> Any:
    kind = item.WhichOneof("value")
    if kind is None:
        return _json(item.value_json)
    if kind == "none":
        return None
    if kind == "json":
        return _json(item.json)
    return getattr(item, kind)


def _run_file(path: Path) -> Path:
    """The `.wandb` file meant by a file, an `offline-run-*` folder or a folder holding exactly one run."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such W&B run file or folder")
    if not path.is_dir():
        return path
    direct = sorted(path.glob("run-*.wandb"))
    if len(direct) == 1:
        return direct[0]
    runs = find_offline_runs(path)
    if not runs:
        raise FileNotFoundError(f"{path}: no offline W&B run (wandb/offline-run-*/run-*.wandb) below it")
    if len(runs) > 1:
        listing = "\n  ".join(str(r) for r in runs)
        raise ValueError(f"{path}: holds {len(runs)} offline W&B runs; pass one of:\n  {listing}")
    return runs[0]


def read_run(path: str | Path) -> OfflineRun:
    """Read an offline run from its `.wandb` file, its `offline-run-*` folder, or a folder holding exactly
    one offline run below it (e.g. a run folder with `wandb/offline-run-*`)."""
    path = _run_file(Path(path))
    run = OfflineRun(path=path)
    step_of_history: list[dict[str, Any]] = []
    gen = iter_records(path)
    while True:
        try:
            record = next(gen)
        except StopIteration as stop:
            run.truncated = bool(stop.value)
            break
        kind = record.WhichOneof("record_type")
        run.record_counts[kind] = run.record_counts.get(kind, 0) + 1
        if kind == "run":
            r = record.run
            run.run_id = r.run_id or run.run_id
            run.project = r.project or run.project
            run.entity = r.entity or run.entity
            run.name = r.display_name or run.name
            for item in r.config.update:
                _set(run.config, _item_path(item), _json(item.value_json))
            for item in r.summary.update:
                _set(run.summary, _item_path(item), _json(item.value_json))
        elif kind == "config":
            for item in record.config.update:
                _set(run.config, _item_path(item), _json(item.value_json))
            for item in record.config.remove:
                _remove(run.config, _item_path(item))
        elif kind == "summary":
            for item in record.summary.update:
                _set(run.summary, _item_path(item), _json(item.value_json))
            for item in record.summary.remove:
                _remove(run.summary, _item_path(item))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set(row, _item_path(item), _history_value(item))
            step_of_history.append(row)
        elif kind == "files":
            for f in record.files.files:
                if f.path not in run.files:
                    run.files.append(f.path)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
            run.finished = True
    run.history = step_of_history
    if run.truncated:
        warnings.warn(f"{path}: ends inside a record (run killed or still writing); read what is complete",
                      UserWarning, stacklevel=2)
    return run


def find_offline_runs(root: str | Path) -> list[Path]:
    """All `run-*.wandb` files of offline runs below `root`, oldest first (by their folder's timestamp)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    found = {p.resolve(): p for p in root.rglob("offline-run-*/run-*.wandb")}
    # `latest-run` is a symlink to one of them; resolve() folds it into the real folder.
    return sorted(found.values(), key=lambda p: (p.parent.name, str(p)))
