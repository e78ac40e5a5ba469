"""Your own files: generic items get an item-text template from their columns (every text column, the title or
name first, a description kept), ``item_text_fields`` narrows it, and a recipe trains on generic files directly."""

import json
import logging

import numpy as np
import pytest
from helpers import model_args, training_args

from recpipe.cli import main as cli
from recpipe.configs import DataArguments
from recpipe.data import load_prepared
from recpipe.data.templates import item_template
from recpipe.pipeline import run


def write_shop(folder, users=20, items=12, per_user=6):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["uid,sku,ts"]
    for u in range(users):
        for k, i in enumerate(rng.choice(items, size=per_user, replace=False)):
            lines.append(f"u{u},s{i},{1_600_000_000 + 60 * k + u}")
    (folder / "clicks.csv").write_text("\n".join(lines) + "\n")
    rows = ["sku,name,description,brand_name"]
    rows += [f's{i},w{i},"A w{i} that g{i % 5}, with w{(i * 3) % 12}",g{i % 3}' for i in range(items)]
    (folder / "items.csv").write_text("\n".join(rows) + "\n")
    return folder / "clicks.csv", folder / "items.csv"


def test_auto_template_uses_every_text_column_title_first():
    assert item_template("auto", ["item_id", "description", "title", "brand_name"]) == [
        ("Title", "title", 200),
        ("Description", "description", 300),
        ("Brand name", "brand_name", 300),
    ]
    assert item_template("movielens", ["item_id", "name"])[0] == ("Title", "title", 200)


def test_prepare_generic_keeps_the_description(tmp_path, capsys):
    clicks, items = write_shop(tmp_path / "raw")
    base = ["data", "prepare", "--dataset", "generic", "--interactions", str(clicks), "--items", str(items)]
    base += ["--columns", '{"user_id": "uid", "item_id": "sku", "timestamp": "ts"}', "--min_item_interactions", "2"]
    assert cli([*base, "--output_dir", str(tmp_path / "all")]) == 0
    assert "filtered:" in capsys.readouterr().out
    dd, stats = load_prepared(tmp_path / "all")
    text = dict(zip(dd["items"]["item_id"], dd["items"]["text"]))["s1"]
    assert text == "Name: w1. Description: A w1 that g1, with w3. Brand name: g1."
    assert stats["config"]["template"] == "auto" and stats["source"]["items_path"] == str(items.resolve())
    assert cli([*base, "--output_dir", str(tmp_path / "names"), "--item_text_fields", "name"]) == 0
    dd, _ = load_prepared(tmp_path / "names")
    assert dict(zip(dd["items"]["item_id"], dd["items"]["text"]))["s1"] == "Name: w1."


def test_a_recipe_trains_on_generic_files(tiny_model_dir, tmp_path, caplog):
    clicks, items = write_shop(tmp_path / "raw")
    data_args = DataArguments(
        dataset="generic",
        interactions=str(clicks),
        items=str(items),
        columns=json.dumps({"user_id": "uid", "item_id": "sku", "timestamp": "ts"}),
        min_item_interactions=2,
        max_history=10,
        prepared_dir=str(tmp_path / "prepared"),
    )
    assert data_args.template == "auto" and data_args.columns["item_id"] == "sku"
    caplog.set_level(logging.INFO)
    metrics = run(data_args, model_args(tiny_model_dir), training_args(tmp_path, max_steps=2))
    assert 0 <= metrics["test_ndcg@10"] <= 1
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("data ("))
    assert "20 users" in summary and "12 items" in summary
    with pytest.raises(ValueError, match="for dataset: generic"):
        DataArguments(dataset="movielens-100k", items=str(items))
