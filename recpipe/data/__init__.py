"""The data layer: readers (one per format) → canonical tables → prepared ``DatasetDict``."""

from __future__ import annotations

import os

from recpipe.data.fetch import EMBEDDED, dataset_dir, fetch
from recpipe.data.prepare import PrepareConfig, current_stats, load_prepared, prepare, prepare_lock, source_key
from recpipe.data.schema import DataFormatError, SourceTables
from recpipe.errors import InvalidInputError

DATASETS = ("movielens-100k", "movielens-1m", "amazon2023", "amazon2018", "generic")


def load_source(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    category: str | None = None,
    on_bad_record: str = "error",
    **generic_kwargs,
) -> SourceTables:
    """Read a dataset's raw files into canonical tables.

    Args:
        dataset: one of ``movielens-100k``, ``movielens-1m`` (embedded; fetched on first use), ``amazon2023``,
            ``amazon2018`` (``data_dir`` + ``category``) or ``generic`` (``generic_kwargs`` go to
            :func:`recpipe.data.generic.read_generic`).
        data_dir: the folder of raw files; defaults to the fetch cache for the embedded datasets.
    """
    if dataset in EMBEDDED:
        from recpipe.data.movielens import read_movielens

        return read_movielens(data_dir or fetch(dataset))
    if dataset in ("amazon2023", "amazon2018"):
        from recpipe.data.amazon import find_amazon_files, read_amazon_2018, read_amazon_2023

        if data_dir is None or category is None:
            raise InvalidInputError(f"{dataset} needs data_dir and category (e.g. category='All_Beauty')")
        version = int(dataset[-4:])
        reviews, meta = find_amazon_files(data_dir, category, version=version)
        reader = read_amazon_2023 if version == 2023 else read_amazon_2018
        return reader(reviews, meta, on_bad_record=on_bad_record)
    if dataset == "generic":
        from recpipe.data.generic import read_generic

        return read_generic(on_bad_record=on_bad_record, **generic_kwargs)
    raise InvalidInputError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")


def default_template(dataset: str) -> str:
    """The item text template of a dataset: its own, or ``auto`` (every text column) for your own files."""
    return {"amazon2023": "amazon2023", "amazon2018": "amazon2018", "generic": "auto"}.get(dataset, "movielens")


__all__ = [
    "DATASETS",
    "DataFormatError",
    "PrepareConfig",
    "SourceTables",
    "current_stats",
    "dataset_dir",
    "default_template",
    "fetch",
    "load_prepared",
    "load_source",
    "prepare",
    "prepare_lock",
    "source_key",
]
