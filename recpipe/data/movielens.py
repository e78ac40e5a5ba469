"""MovieLens readers: RecBole atomic files (the embedded copies) and the official GroupLens files.

Both produce the canonical tables of :mod:`recpipe.data.schema`; item text fields are ``title`` (with the year,
e.g. ``Toy Story (1995)``) and ``genres`` (a list). The files are small (ML-1M: 24 MB), so pandas reads them whole.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import datasets
import pandas as pd

from recpipe.data.schema import INTERACTION_FEATURES, DataFormatError, SourceTables
from recpipe.errors import MissingInputError

# u.genre of ML-100K, in the order of u.item's 19 flag columns.
ML100K_GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir Horror "
    "Musical Mystery Romance Sci-Fi Thriller War Western"
).split()

ITEM_FEATURES = datasets.Features(
    {"item_id": datasets.Value("string"), "title": datasets.Value("string"), "genres": [datasets.Value("string")]}
)


def _year_suffix(title: str, year: str | None) -> str:
    """Append ``(year)`` unless the title already ends with one; years like ``1995.0`` become ``1995``."""
    if not year or year.lower() in ("nan", "none"):
        return title
    year = year.split(".")[0]
    return title if re.search(r"\(\d{4}\)\s*$", title) else f"{title} ({year})"


def _interactions(df: pd.DataFrame, path: Path, header_lines: int = 0) -> datasets.Dataset:
    for col in ("timestamp", "rating"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise DataFormatError(path, row + 1 + header_lines, f"{col} is not a number: {df[col].iloc[row]!r}")
        df[col] = values
    df = df.astype({"user_id": str, "item_id": str, "timestamp": "int64", "rating": "float32"})
    return datasets.Dataset.from_pandas(df[list(INTERACTION_FEATURES)], features=INTERACTION_FEATURES)


def _read_table(path: Path, sep: str, names: list[str] | None, encoding: str = "utf-8-sig", header: int | None = 0):
    if not path.is_file():
        raise MissingInputError(f"{path}: no such file")
    try:
        return pd.read_csv(
            path,
            sep=sep,
            names=names,
            header=None if names is not None else header,
            dtype=str,
            quoting=csv.QUOTE_NONE,
            encoding=encoding,
            engine="python" if len(sep) > 1 else "c",
            keep_default_na=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataFormatError(path, None, f"cannot parse as a {sep!r}-separated table: {e}") from e


def read_recbole_atomic(inter_path: str | os.PathLike, item_path: str | os.PathLike) -> SourceTables:
    """Read RecBole atomic ``.inter`` / ``.item`` files (typed headers such as ``user_id:token``)."""
    inter_path, item_path = Path(inter_path), Path(item_path)
    inter = _read_table(inter_path, "\t", None)
    inter.columns = [c.split(":")[0] for c in inter.columns]
    missing = {"user_id", "item_id", "timestamp", "rating"} - set(inter.columns)
    if missing:
        raise DataFormatError(inter_path, 1, f"header lacks {sorted(missing)}")
    items = _read_table(item_path, "\t", None)
    items.columns = [c.split(":")[0] for c in items.columns]
    genre_col = "class" if "class" in items.columns else "genre"
    titles = [
        _year_suffix(t.strip(), y.strip())
        for t, y in zip(items["movie_title"], items.get("release_year", [""] * len(items)))
    ]
    table = {
        "item_id": items["item_id"].tolist(),
        "title": titles,
        "genres": [g.split() for g in items[genre_col]],
    }
    return SourceTables(
        interactions=_interactions(inter, inter_path, header_lines=1),
        items=datasets.Dataset.from_dict(table, features=ITEM_FEATURES),
        name=inter_path.stem,
    )


def read_grouplens_100k(data_dir: str | os.PathLike) -> SourceTables:
    """Read the official ML-100K files ``u.data`` (tab-separated) and ``u.item`` (``|``-separated, Latin-1)."""
    data_dir = Path(data_dir)
    inter = _read_table(data_dir / "u.data", "\t", ["user_id", "item_id", "rating", "timestamp"])
    items = _read_table(data_dir / "u.item", "|", None, encoding="latin-1", header=None)
    if items.shape[1] != 5 + len(ML100K_GENRES):
        raise DataFormatError(data_dir / "u.item", 1, f"expected 24 '|'-separated fields, got {items.shape[1]}")
    flags = items.iloc[:, 5:].to_numpy() == "1"
    table = {
        "item_id": items.iloc[:, 0].tolist(),
        "title": items.iloc[:, 1].str.strip().tolist(),
        "genres": [[g for g, on in zip(ML100K_GENRES, row) if on] for row in flags],
    }
    return SourceTables(
        interactions=_interactions(inter, data_dir / "u.data"),
        items=datasets.Dataset.from_dict(table, features=ITEM_FEATURES),
        name="ml-100k",
    )


def read_grouplens_1m(data_dir: str | os.PathLike) -> SourceTables:
    """Read the official ML-1M files ``ratings.dat`` and ``movies.dat`` (``::``-separated, Latin-1)."""
    data_dir = Path(data_dir)
    inter = _read_table(data_dir / "ratings.dat", "::", ["user_id", "item_id", "rating", "timestamp"])
    items = _read_table(data_dir / "movies.dat", "::", ["item_id", "title", "genres"], encoding="latin-1")
    table = {
        "item_id": items["item_id"].tolist(),
        "title": items["title"].str.strip().tolist(),
        "genres": [g.split("|") if g else [] for g in items["genres"]],
    }
    return SourceTables(
        interactions=_interactions(inter, data_dir / "ratings.dat"),
        items=datasets.Dataset.from_dict(table, features=ITEM_FEATURES),
        name="ml-1m",
    )


def read_movielens(data_dir: str | os.PathLike) -> SourceTables:
    """Read whichever MovieLens layout ``data_dir`` holds: RecBole atomic, GroupLens 100K or GroupLens 1M."""
    data_dir = Path(data_dir)
    if (data_dir / "u.data").is_file():
        return read_grouplens_100k(data_dir)
    if (data_dir / "ratings.dat").is_file():
        return read_grouplens_1m(data_dir)
    inters = sorted(data_dir.glob("*.inter"))
    if inters:
        inter = inters[0]
        return read_recbole_atomic(inter, inter.with_suffix(".item"))
    raise MissingInputError(
        f"{data_dir} holds no MovieLens files (expected u.data+u.item, ratings.dat+movies.dat, or RecBole "
        f"*.inter+*.item); run `recpipe data fetch movielens-100k` first"
    )
