"""The Amazon recipe runs end to end on schema-exact Amazon 2023 fixture files, and says what to put where when
the files are missing."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import meta_2023, review_2023, write_lines

from recpipe.parser import RecipeParser

ROOT = Path(__file__).resolve().parent.parent


def load_recipe():
    spec = importlib.util.spec_from_file_location("amazon_recipe", ROOT / "recipes" / "amazon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_category(folder: Path, users=30, items=15, per_user=6):
    rng = np.random.default_rng(0)
    reviews = []
    for u in range(users):
        for k, i in enumerate(rng.choice(items, size=per_user, replace=False)):
            reviews.append(
                review_2023(f"U{u}", f"B{i:09d}", float(rng.integers(1, 6)), 1_600_000_000_000 + k * 86_400_000)
            )
    reviews.append("{not json")  # a malformed line: skipped and counted (on_bad_record: skip in the recipe)
    meta = [
        meta_2023(f"B{i:09d}", f"Product {i}", features=[f"feature {i % 4}"], categories=["Beauty"])
        for i in range(items)
    ]
    folder.mkdir(parents=True)
    write_lines(folder / "All_Beauty.jsonl.gz", reviews, gz=True)
    write_lines(folder / "meta_All_Beauty.jsonl.gz", meta, gz=True)


def test_amazon_recipe_trains_on_fixture_files(tiny_model_dir, tmp_path):
    write_category(tmp_path / "raw")
    args = RecipeParser().parse_recipe(
        ["--config", str(ROOT / "recipes" / "amazon" / "config_lora.yaml")]
        + ["--data_dir", str(tmp_path / "raw"), "--prepared_dir", str(tmp_path / "prepared")]
        + ["--model_name_or_path", tiny_model_dir, "--lora_target_modules", "query", "value", "--hidden_size", "16"]
        + ["--min_user_interactions", "2", "--min_item_interactions", "2", "--max_steps", "4", "--bf16", "false"]
        + ["--use_cpu", "true", "--output_dir", str(tmp_path / "out"), "--eval_steps", "2", "--save_steps", "2"]
        + ["--per_device_train_batch_size", "8", "--inference_dtype", "float32"]
    )
    metrics = load_recipe().main(*args)
    assert 0 <= metrics["test_ndcg@10"] <= 1
    stats = json.loads((tmp_path / "prepared" / "stats.json").read_text())
    assert stats["raw"]["users"] == 30 and stats["skipped_records"] == {"invalid_json": 1}
    assert json.loads((tmp_path / "out" / "test_results.json").read_text())["test_ndcg@10"] == metrics["test_ndcg@10"]


def test_amazon_recipe_without_files_says_what_to_put_where(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / "amazon.py"),
            "--config",
            str(ROOT / "recipes" / "amazon" / "config_lora.yaml"),
        ]
        + [
            "--data_dir",
            str(tmp_path / "nowhere"),
            "--prepared_dir",
            str(tmp_path / "p"),
            "--output_dir",
            str(tmp_path / "o"),
        ]
        + ["--bf16", "false", "--use_cpu", "true"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "All_Beauty.jsonl" in proc.stderr and "meta_All_Beauty.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr
