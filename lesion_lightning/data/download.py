"""Download and extract a registered dataset's archives: resumable, verified, with an extraction guard.

`download("isic2018", root)` fetches each archive of the dataset's spec (its module in
`lesion_lightning.data.datasets`) into `root/.downloads/` (resuming a partial `.part` file with an HTTP
Range request), verifies its size and checksum where known, and extracts it into `root` so that the
readers find the official layout there. Extraction refuses any archive member whose path would land
outside its target folder (absolute paths, `..`, symbolic links) before writing anything, never
replaces or deletes a file or folder in `root` that an earlier extraction of the same archive did not
create (a ledger `.downloads/<archive>.created` lists what it created), and an extracted archive is
skipped on later runs (marker file). Sizes/checksums are filled in only where verified; None means
"not checked".
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from http.client import HTTPException
from pathlib import Path

from lesion_lightning.data.datasets import Archive, get_dataset_spec, list_datasets
from lesion_lightning.data.errors import DataError

__all__ = ["Archive", "archives", "downloadable", "download", "download_file", "extract_archive", "safe_extract_zip"]


def downloadable() -> tuple[str, ...]:
    """Registered datasets with download archives."""
    return tuple(n for n in list_datasets() if get_dataset_spec(n).archives)


def archives(dataset: str) -> tuple[Archive, ...]:
    spec = get_dataset_spec(dataset) if dataset in list_datasets() else None
    if spec is None or not spec.archives:
        raise ValueError(f"dataset {dataset!r} cannot be downloaded; choose one of: {', '.join(downloadable())}")
    return spec.archives


_CHUNK = 1 << 20


# ----------------------------------------------------------------------------------------------
# HTTP with resume


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm  # a dependency of pytorch-lightning

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, leave=False)


def _content_range_total(value: str | None) -> int | None:
    m = re.match(r"bytes \d+-\d+/(\d+)", value or "")
    return int(m.group(1)) if m else None


def _fetch_once(url: str, part: Path, progress: bool, desc: str, timeout: float) -> int | None:
    """Append the rest of `url` to `part` (resuming from its size); returns the expected total or None."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "lesion-lightning"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the .part is complete
            return _content_range_total(exc.headers.get("Content-Range")) or have
        raise
    with response:
        if response.status == 206:
            total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # 200: the server ignored the range, start over
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with open(part, mode) as f, _progress_bar(total, have, desc, progress) as bar:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:  # read(n) returns b"" on a dropped connection, no error
        raise ConnectionError(f"connection closed after {size} of {total} bytes")
    return total


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, archive: Archive, expected_size: int | None) -> None:
    size = path.stat().st_size
    for label, want in (("size", archive.size), ("size (from the server)", expected_size)):
        if want is not None and size != want:
            raise DataError(path, f"{label} mismatch: expected {want} bytes, got {size}")
    for algorithm in ("sha256", "md5"):
        want = getattr(archive, algorithm)
        if want is not None:
            got = _digest(path, algorithm)
            if got.lower() != want.lower():
                raise DataError(path, f"{algorithm} checksum mismatch: expected {want}, got {got}")


def download_file(archive: Archive, dest: Path, *, url: str | None = None, progress: bool = True,
                  retries: int = 3, timeout: float = 60.0) -> Path:
    """Download `archive` to `dest` via `dest.part` (resumed across calls and retries), then verify it.

    A complete `dest` that verifies is kept; a corrupt one (or a `.part` that fails verification)
    is deleted before the DataError, so the next call starts clean.
    """
    url = url or archive.url
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        try:
            _verify(dest, archive, None)
            return dest
        except DataError:
            dest.unlink()
    part = dest.with_name(dest.name + ".part")
    total = None
    for attempt in range(1, retries + 1):
        try:
            total = _fetch_once(url, part, progress, archive.filename, timeout)
            break
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == retries:  # 4xx will not get better by retrying
                raise DataError(url, f"download failed: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            if attempt == retries:
                raise DataError(url, f"download failed after {retries} attempts (partial data kept in "
                                     f"{part}, run again to resume): {exc}") from exc
    try:
        _verify(part, archive, total)
    except DataError as exc:
        part.unlink(missing_ok=True)
        raise DataError(dest, exc.problem) from None
    os.replace(part, dest)
    return dest


# ----------------------------------------------------------------------------------------------
# Guarded extraction


def _unsafe_reason(name: str) -> str | None:
    if not name:
        return "empty member name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "path escapes the target folder ('..')"
    return None


def _check_members(names: Iterable[str], target: Path, archive: Path) -> None:
    base = target.resolve()
    for name in names:
        reason = _unsafe_reason(name)
        if reason is None and not (base / name).resolve().is_relative_to(base):
            reason = "path escapes the target folder"
        if reason:
            raise DataError(archive, f"refusing to extract member {name!r}: {reason}")


def _strip_prefix(names: Sequence[str], into: str | None) -> bool:
    """True when every member already sits under `into/` (the archive carries its own top folder)."""
    if not into:
        return False
    real = [n for n in names if not n.startswith("__MACOSX/")]
    return bool(real) and all(n == f"{into}/" or n.startswith(f"{into}/") for n in real)


def safe_extract_zip(zip_path: Path, root: Path, into: str | None = None) -> Path:
    """Extract a zip under root (into root/into unless the zip already has that top folder).

    Every member is checked before anything is written: absolute paths, `..` components, targets
    resolving outside the folder, and symbolic links are refused with a DataError naming the member.
    """
    root = Path(root)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(zip_path, f"not a readable zip archive: {exc}") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX/")]
        target = root if (into is None or _strip_prefix([i.filename for i in infos], into)) else root / into
        _check_members([i.filename for i in infos], target, zip_path)
        for info in infos:
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(zip_path, f"refusing to extract member {info.filename!r}: symbolic link")
        tops = [into] if target != root else [n.split("/", 1)[0] for n in (i.filename for i in infos)]
        _claim(root, tops, zip_path)
        target.mkdir(parents=True, exist_ok=True)
        for info in infos:
            try:
                zf.extract(info, target)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise DataError(zip_path, f"corrupt archive member {info.filename!r}: {exc}") from exc
    return target


def _claim(root: Path, names: Iterable[str], archive: Path) -> None:
    """Refuse (before writing) when a top-level entry the archive writes already exists in `root` and
    was not created by an earlier extraction of this archive; then record the entries as ours."""
    ledger = root / ".downloads" / f"{archive.name}.created"
    ours = set(ledger.read_text().splitlines()) if ledger.is_file() else set()
    names = sorted({n for n in names if n})
    clash = [n for n in names if (root / n).exists() and n not in ours]
    if clash:
        raise DataError(root / clash[0], f"already exists and was not created by extracting {archive.name}; "
                        "nothing was extracted: move it away, or extract the archive by hand")
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text("".join(f"{n}\n" for n in sorted(ours | set(names))))


def _rar_tool() -> list[str] | None:
    for tool, list_args in (("unrar", ["lb"]), ("7z", ["l", "-slt", "-ba"]), ("bsdtar", ["-tf"])):
        if shutil.which(tool):
            return [tool, *list_args]
    return None


def _extract_rar(rar_path: Path, root: Path) -> Path:
    """RAR (PH2) needs an external tool: unrar, 7z or bsdtar; member names are checked first."""
    tool = _rar_tool()
    if tool is None:
        raise DataError(rar_path, f"no RAR extractor found (install unrar, 7z or bsdtar), or extract it by hand "
                                  f"into {root} so that {root}/PH2Dataset exists")
    listing = subprocess.run([*tool, str(rar_path)], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise DataError(rar_path, f"cannot list the archive with {tool[0]}: {listing.stderr.strip()[:200]}")
    lines = listing.stdout.splitlines()
    names = [ln[len("Path = "):] for ln in lines if ln.startswith("Path = ")] if tool[0] == "7z" else lines
    _check_members([n for n in names if n], root, rar_path)
    # Extract into a fresh staging folder, refuse links, then move the top-level entries into root.
    staging = root / f".extract-{rar_path.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = {"unrar": ["unrar", "x", "-o+", "-ol-", str(rar_path), f"{staging}/"],
           "7z": ["7z", "x", "-y", f"-o{staging}", str(rar_path)],
           "bsdtar": ["bsdtar", "-xf", str(rar_path), "-C", str(staging)]}[tool[0]]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        if done.returncode != 0:
            raise DataError(rar_path, f"{tool[0]} failed: {done.stderr.strip()[:200]}")
        for path in staging.rglob("*"):
            if path.is_symlink():
                raise DataError(rar_path, f"refusing to extract member {str(path.relative_to(staging))!r}: "
                                          "symbolic link")
        entries = sorted(staging.iterdir())
        _claim(root, [e.name for e in entries], rar_path)
        for entry in entries:  # only entries this archive created before (a rerun) are replaced
            dest = root / entry.name
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            shutil.move(str(entry), dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def extract_archive(path: Path, root: Path, into: str | None = None) -> Path:
    if path.suffix.lower() == ".zip":
        return safe_extract_zip(path, root, into)
    if path.suffix.lower() == ".rar":
        return _extract_rar(path, root)
    raise DataError(path, "unsupported archive type (expected .zip or .rar)")


# ----------------------------------------------------------------------------------------------


def download(
    dataset: str,
    root: str | Path,
    *,
    base_url: str | None = None,
    urls: dict[str, str] | None = None,
    progress: bool = True,
    subsets: Sequence[str] | None = None,
    keep_archives: bool = True,
) -> Path:
    """Fetch and extract `dataset` into `root`; returns root.

    base_url: fetch every file as `{base_url}/{filename}` instead of the official URL (mirrors, tests).
    urls: per-filename URL overrides (win over base_url). subsets: only these official subsets'
    archives (train/val/test; archives without a subset are always fetched). Archives already
    extracted (marker in root/.downloads) are skipped.
    """
    files = archives(dataset)
    root = Path(root)
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    urls = urls or {}
    wanted = set(subsets) if subsets is not None else None
    for archive in files:
        if wanted is not None and archive.subset is not None and archive.subset not in wanted:
            continue
        url = urls.get(archive.filename) or (f"{base_url.rstrip('/')}/{archive.filename}" if base_url else archive.url)
        if not archive.extract:
            download_file(archive, root / archive.filename, url=url, progress=progress)
            continue
        marker = downloads / f"{archive.filename}.extracted"
        if marker.exists():
            continue
        path = download_file(archive, downloads / archive.filename, url=url, progress=progress)
        extract_archive(path, root, archive.into)
        marker.write_text(f"{archive.filename} {path.stat().st_size}\n")
        if not keep_archives:
            path.unlink()
    return root
