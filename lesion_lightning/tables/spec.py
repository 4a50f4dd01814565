"""Table specs: one YAML file per published results table, in `experiments/tables/`.

A spec names the paper and table, what kind of job reproduces it, the dataset(s) and split, the
rows (models with their presets and overrides, or paper-only rows we do not implement), the
metrics, the seeds/folds, the per-profile overrides, and the paper's printed values transcribed
exactly (`"90.87 ± 0.46"`, `"0.897 ± 0.010"`, `"91.5%"`, `"–"` for a blank cell).

Top-level keys:

    id            table id, e.g. lanet-table5 (defaults to the file name)
    paper         the paper's name;  paper_file: its file under ../shared/papers
    table         the table's number/name as printed ("5", "headline")
    title         the table's caption
    kind          train | complexity | efficiency | cross-dataset
    units         percent | fraction: how ratio metrics without a '%' are printed in the paper
    datasets      list of dataset names (LesionDataModule.dataset)
    split         80-10-10 | 70-30 | 80-20 | official | kfold
    folds         number of folds (split: kfold only)
    seeds         number of seeds in the paper profile (default 1)
    metrics       metric names (see METRICS)
    proposed      id of the paper's proposed row (the paired t-test reference)
    profiles      {paper: {...}, smoke: {...}} overrides: epochs, image_size, batch_size, seeds, args
    sizes         input sizes (efficiency tables)
    test_datasets datasets the trained model is evaluated on (cross-dataset tables)
    scoring       how masks are scored (required for train/cross-dataset tables; see tables.scoring)
    protocol      which network is scored: checkpoint choice and scored subset (see tables.scoring)
    cost_size     input size at which trained rows' params/GFLOPs/MACs are counted (default: the training size)
    rows          list of rows:
        id, label (as printed), model (registry name), preset (experiment YAML, relative to the
        repository), args (extra CLI options), model_kwargs, paper_only (true for rows we do not
        implement), cited_from (the paper prints the row from another paper: a paper-only row with its
        source), note, deviation (how the row's protocol still differs from the paper's; printed in
        every output), dataset (which dataset's block the row belongs to, multi-dataset tables),
        paper: {metric: printed value}
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lesion_lightning.data.datasets import list_datasets
from lesion_lightning.tables.scoring import (
    METRIC_LABELS,
    METRICS,
    Protocol,
    Scoring,
    SpecError,
    check_choice,
    load_protocol,
    load_scoring,
    spec_error,
    with_options,
)
from lesion_lightning.paths import REPO_ROOT

__all__ = ["METRICS", "METRIC_LABELS", "SpecError", "TableSpec", "Row", "load_spec", "load_all", "find_spec",
           "with_options"]

TABLES_DIR = REPO_ROOT / "experiments" / "tables"
KINDS = ("train", "complexity", "efficiency", "cross-dataset")
UNITS = ("percent", "fraction")
PROFILES = ("paper", "smoke")
SPLITS = ("80-10-10", "70-30", "80-20", "official", "kfold")
DATASETS = list_datasets(fixed_layout=True)

TOP_KEYS = {"id", "paper", "paper_file", "table", "title", "kind", "units", "datasets", "split", "folds", "seeds",
            "metrics", "proposed", "profiles", "sizes", "test_datasets", "rows", "notes", "scoring", "protocol",
            "cost_size"}
ROW_KEYS = {"id", "label", "model", "preset", "args", "model_kwargs", "paper_only", "note", "dataset", "paper",
            "size", "deviation", "cited_from", "tta", "members"}
PROFILE_KEYS = {"epochs", "image_size", "batch_size", "seeds", "args", "split", "folds", "limit_batches"}

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_VALUE = re.compile(rf"^\s*({_NUMBER})\s*(%?)\s*(?:(?:±|\+/-|\+-)\s*({_NUMBER})\s*(%?))?\s*$")
BLANKS = {"–", "—", "-", ""}


@dataclass(frozen=True)
class PaperValue:
    printed: str  # exactly as transcribed
    mean: float | None  # in the metric's natural unit (fraction for ratio metrics)
    std: float | None


@dataclass
class Row:
    id: str
    label: str
    model: str | None
    preset: str | None
    args: list[str] = field(default_factory=list)
    model_kwargs: dict[str, Any] | None = None
    paper_only: bool = False
    note: str = ""
    dataset: str | None = None
    size: int | None = None
    paper: dict[str, PaperValue] = field(default_factory=dict)
    deviation: str = ""  # how this row's protocol still differs from the paper's (printed in every output)
    cited_from: str = ""  # the paper prints this row from another paper (a paper-only row with its source)
    tta: bool = False  # scored with 6-fold test-time augmentation
    members: list[str] = field(default_factory=list)  # an ensemble row: the trained rows it combines


@dataclass
class TableSpec:
    path: Path
    id: str
    paper: str
    paper_file: str
    table: str
    title: str
    kind: str
    units: str
    datasets: list[str]
    split: str | None
    folds: int | None
    seeds: int
    metrics: list[str]
    proposed: str | None
    profiles: dict[str, dict[str, Any]]
    rows: list[Row]
    sizes: list[int] = field(default_factory=list)
    test_datasets: list[str] = field(default_factory=list)
    notes: str = ""
    scoring: Scoring | None = None  # None: a complexity/efficiency table (no masks scored)
    protocol: Protocol = field(default_factory=Protocol)
    cost_size: int | None = None  # trained rows' params/GFLOPs/MACs at this input size (else the training size)

    def row(self, row_id: str) -> Row:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise KeyError(row_id)

    def profile(self, name: str) -> dict[str, Any]:
        return dict(self.profiles.get(name) or {})

    def conventions(self) -> dict[str, Any]:
        """Protocol, scoring and row deviations, as every output records them."""
        return {"protocol": self.protocol.as_dict(), "scoring": self.scoring.as_dict() if self.scoring else None,
                "deviations": {r.id: r.deviation for r in self.rows if r.deviation}}

    def convention_lines(self) -> list[str]:
        """The protocol and scoring convention in words (headers of every table output)."""
        lines = []
        if self.scoring is not None:
            lines.append(f"Protocol: {self.protocol.describe()}" + (f" ({self.protocol.why})" if self.protocol.why else ""))
            lines.append(f"Scoring: {self.scoring.describe()}" + (f" ({self.scoring.why})" if self.scoring.why else ""))
        for r in self.rows:
            if r.deviation:
                lines.append(f"Deviation, {r.label}: {r.deviation}")
            if r.cited_from:
                lines.append(f"Cited, {r.label}: the paper prints this row from {r.cited_from} (not trained here)")
        return lines


def parse_value(printed: Any, ratio: bool, units: str) -> PaperValue:
    """`"90.87 ± 0.46"` (percent table) -> mean 0.9087, std 0.0046; `"–"` -> None. Raises ValueError."""
    text = str(printed).strip()
    if text in BLANKS:
        return PaperValue(text, None, None)
    m = _VALUE.match(text)
    if not m:
        raise ValueError(f"cannot read {text!r} as 'NUMBER [± NUMBER]'")
    mean, pct, std, std_pct = m.group(1), m.group(2), m.group(3), m.group(4)

    def scale(value: str, has_pct: str) -> float:
        v = float(value)
        if ratio and (has_pct or units == "percent"):
            return v / 100.0
        return v

    return PaperValue(text, scale(mean, pct), scale(std, std_pct or pct) if std is not None else None)


_fail = spec_error


def _expect(path: Path, key: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, types) or isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _fail(path, key, f"expected {what}, got {value!r}")
    return value


def load_spec(path: str | Path) -> TableSpec:
    """Read and validate one table spec; every error names the file and the offending key."""
    path = Path(path)
    data = _read(path)
    kind = check_choice(path, "kind", data["kind"], KINDS)
    units = check_choice(path, "units", data.get("units", "percent"), UNITS)
    datasets = _dataset_list(path, "datasets", data.get("datasets"))
    test_datasets = _dataset_list(path, "test_datasets", data.get("test_datasets"))
    if kind in ("train", "cross-dataset") and not datasets:
        raise _fail(path, "datasets", f"a {kind} table needs at least one dataset")
    if kind == "cross-dataset" and not test_datasets:
        raise _fail(path, "test_datasets", "a cross-dataset table needs test datasets")
    split, folds = _split(path, data, kind)
    seeds = data.get("seeds", 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise _fail(path, "seeds", f"expected a positive integer, got {seeds!r}")
    metrics = _expect(path, "metrics", data["metrics"], list, "a list of metric names")
    for i, m in enumerate(metrics):
        if m not in METRICS:
            raise _fail(path, f"metrics[{i}]", f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
    scored = kind in ("train", "cross-dataset")
    if scored and "scoring" not in data:
        raise _fail(path, "scoring", "missing (required): aggregation, resolution, threshold and classes")
    scoring = load_scoring(path, data["scoring"], list(metrics)) if "scoring" in data else None
    protocol = load_protocol(path, data.get("protocol"))
    sizes = _expect(path, "sizes", data.get("sizes") or [], list, "a list of input sizes")
    if kind == "efficiency" and not sizes:
        raise _fail(path, "sizes", "an efficiency table needs input sizes")
    rows = _rows(path, data["rows"], kind, list(metrics), units, datasets, test_datasets)
    proposed = data.get("proposed")
    if proposed is not None and proposed not in {r.id for r in rows}:
        raise _fail(path, "proposed", f"{proposed!r} is not a row id")
    return TableSpec(path=path, id=str(data.get("id") or path.stem), paper=str(data["paper"]),
                     paper_file=str(data["paper_file"]), table=str(data["table"]), title=str(data["title"]),
                     kind=kind, units=units, datasets=datasets, split=split, folds=folds, seeds=seeds,
                     metrics=list(metrics), proposed=proposed, profiles=_profiles(path, data.get("profiles")),
                     rows=rows, sizes=[int(s) for s in sizes], test_datasets=test_datasets,
                     notes=str(data.get("notes") or ""), scoring=scoring, protocol=protocol,
                     cost_size=_cost_size(path, data.get("cost_size")))


def _cost_size(path: Path, value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise _fail(path, "cost_size", f"expected a positive input size in pixels, got {value!r}")
    return value


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SpecError(f"{path}: cannot read: {err}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown key; allowed keys: {', '.join(sorted(TOP_KEYS))}")
    for key in ("paper", "paper_file", "table", "title", "kind", "metrics", "rows"):
        if key not in data:
            raise _fail(path, key, "missing (required)")
    return data


def _dataset_list(path: Path, key: str, value: Any) -> list[str]:
    names = _expect(path, key, value or [], list, "a list of dataset names")
    for i, d in enumerate(names):
        if d not in DATASETS:
            raise _fail(path, f"{key}[{i}]", f"unknown dataset {d!r}; choose from {', '.join(DATASETS)}")
    return list(names)


def _split(path: Path, data: dict[str, Any], kind: str) -> tuple[str | None, int | None]:
    split = data.get("split")
    if kind in ("train", "cross-dataset"):
        check_choice(path, "split", split, SPLITS)
    folds = data.get("folds")
    if split == "kfold":
        if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
            raise _fail(path, "folds", f"split kfold needs folds >= 2, got {folds!r}")
    elif folds is not None:
        raise _fail(path, "folds", "only allowed with split: kfold")
    return split, folds


def _profiles(path: Path, profiles: Any) -> dict[str, dict[str, Any]]:
    _expect(path, "profiles", profiles or {}, dict, "a mapping profile -> overrides")
    for name, over in (profiles or {}).items():
        if name not in PROFILES:
            raise _fail(path, f"profiles.{name}", f"unknown profile; choose from {', '.join(PROFILES)}")
        _expect(path, f"profiles.{name}", over or {}, dict, "a mapping of overrides")
        for k in over or {}:
            if k not in PROFILE_KEYS:
                raise _fail(path, f"profiles.{name}.{k}", f"unknown override; allowed: {', '.join(sorted(PROFILE_KEYS))}")
        if "args" in (over or {}):
            _expect(path, f"profiles.{name}.args", over["args"], list, "a list of CLI options")
    return {k: dict(v or {}) for k, v in (profiles or {}).items()}


def _rows(path: Path, rows_data: Any, kind: str, metrics: list[str], units: str, datasets: list[str],
          test_datasets: list[str]) -> list[Row]:
    _expect(path, "rows", rows_data, list, "a list of rows")
    if not rows_data:
        raise _fail(path, "rows", "needs at least one row")
    rows: list[Row] = []
    seen: set[str] = set()
    for i, rd in enumerate(rows_data):
        row = _row(path, f"rows[{i}]", rd, kind, metrics, units, datasets, test_datasets)
        key = f"{row.dataset or ''}/{row.id}"
        if key in seen:
            raise _fail(path, f"rows[{i}].id", f"duplicate row id {row.id!r}")
        seen.add(key)
        rows.append(row)
    ids = {r.id for r in rows}
    for i, row in enumerate(rows):
        unknown = [m for m in row.members if m not in ids]
        if unknown:
            raise _fail(path, f"rows[{i}].members", f"{unknown[0]!r} is not a row id")
    return rows


def _row(path: Path, where: str, rd: Any, kind: str, metrics: list[str], units: str, datasets: list[str],
         test_datasets: list[str]) -> Row:
    _expect(path, where, rd, dict, "a mapping")
    unknown = sorted(set(rd) - ROW_KEYS)
    if unknown:
        raise _fail(path, f"{where}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(ROW_KEYS))}")
    rid = rd.get("id")
    if not isinstance(rid, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", rid):
        raise _fail(path, f"{where}.id", f"expected a lower-case id (a-z, 0-9, _ . + -), got {rid!r}")
    cited_from = str(rd.get("cited_from") or "")
    paper_only = bool(rd.get("paper_only", False)) or bool(cited_from)
    model, preset = rd.get("model"), rd.get("preset")
    if cited_from and (model or preset):
        raise _fail(path, f"{where}.cited_from", "a cited row prints the paper's value: it has no model or preset")
    members = _expect(path, f"{where}.members", rd.get("members") or [], list, "a list of row ids")
    if members and (model or kind != "train" or len(members) < 2):
        raise _fail(path, f"{where}.members", "an ensemble row of a train table: 2+ trained row ids and no model")
    if not paper_only and kind != "cross-dataset" and not model and not members:
        raise _fail(path, f"{where}.model", "missing: give the registry name or mark the row paper_only: true")
    if model is not None:
        _expect(path, f"{where}.model", model, str, "a registry model name")
    if preset is not None:
        _expect(path, f"{where}.preset", preset, str, "a path to an experiment YAML")
    if not paper_only and kind in ("train", "cross-dataset") and (model or members) and not preset:
        raise _fail(path, f"{where}.preset", "missing: the experiment preset YAML this row trains with")
    args = _expect(path, f"{where}.args", rd.get("args") or [], list, "a list of CLI options")
    mk = rd.get("model_kwargs")
    if mk is not None:
        _expect(path, f"{where}.model_kwargs", mk, dict, "a mapping")
    dataset = rd.get("dataset")
    if dataset is not None and dataset not in datasets + test_datasets:
        raise _fail(path, f"{where}.dataset", f"{dataset!r} is not one of the table's datasets {datasets + test_datasets}")
    if kind == "train" and len(datasets) > 1 and dataset is None:
        raise _fail(path, f"{where}.dataset", f"missing: a table over several datasets ({datasets}) needs each row's dataset")
    if kind == "cross-dataset" and model is None and dataset is None and not paper_only:
        raise _fail(path, f"{where}", "a cross-dataset row needs a model (the trained row) or a test dataset")
    return Row(id=rid, label=str(rd.get("label") or rid), model=model, preset=preset, args=[str(a) for a in args],
               model_kwargs=mk, paper_only=paper_only, note=str(rd.get("note") or ""), dataset=dataset,
               size=rd.get("size"), paper=_paper_values(path, where, rd.get("paper"), metrics, units),
               deviation=str(rd.get("deviation") or ""), cited_from=cited_from,
               tta=_expect(path, f"{where}.tta", rd.get("tta", False), bool, "true or false"),
               members=[str(m) for m in members])


def _paper_values(path: Path, where: str, paper_vals: Any, metrics: list[str], units: str) -> dict[str, PaperValue]:
    _expect(path, f"{where}.paper", paper_vals or {}, dict, "a mapping metric -> printed value")
    parsed: dict[str, PaperValue] = {}
    for metric, printed in (paper_vals or {}).items():
        if metric not in metrics:
            raise _fail(path, f"{where}.paper.{metric}", f"not one of the table's metrics {metrics}")
        try:
            parsed[metric] = parse_value(printed, METRICS[metric][1], units)
        except ValueError as err:
            raise _fail(path, f"{where}.paper.{metric}", str(err)) from None
    return parsed


def spec_paths(directory: str | Path = TABLES_DIR) -> list[Path]:
    return sorted(Path(directory).glob("*.yaml"))


def load_all(directory: str | Path = TABLES_DIR) -> list[TableSpec]:
    return [load_spec(p) for p in spec_paths(directory)]


def find_spec(name: str, directory: str | Path = TABLES_DIR) -> TableSpec:
    """A spec by id/file stem (`lanet-table5`), a short form (`table5` when unique) or a path."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_spec(candidate)
    paths = spec_paths(directory)
    exact = [p for p in paths if p.stem == name]
    if exact:
        return load_spec(exact[0])
    partial = [p for p in paths if p.stem.endswith(name) or p.stem.startswith(name)]
    if len(partial) == 1:
        return load_spec(partial[0])
    names = ", ".join(p.stem for p in paths)
    if len(partial) > 1:
        raise SpecError(f"table {name!r} is ambiguous: {', '.join(p.stem for p in partial)}")
    raise SpecError(f"no table spec {name!r} in {directory}; known tables: {names}")


def is_nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
