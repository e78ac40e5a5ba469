"""Shared fixtures: a tiny random BERT (built from config, ~100 KB) with its own WordPiece vocabulary, and a
synthetic prepared dataset whose users follow a learnable pattern (item i is usually followed by item i + 1)."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)

NUM_ITEMS = 40
WORDS = [f"w{i}" for i in range(NUM_ITEMS)] + [f"g{i}" for i in range(5)]


def item_text(i: int) -> str:
    return f"Title: w{i} w{(i * 7) % NUM_ITEMS}. Genres: g{i % 5}."


@pytest.fixture(autouse=True)
def _restore_environment():
    """Recipes' ``env:`` blocks set variables (WANDB_PROJECT, ...): no test leaves them to the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "title", "genres", ":", ".", ","] + WORDS
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5: BertTokenizerFast(vocab_file=...) silently ignores the file (every word becomes [UNK])
    tokenizer = BertTokenizer(vocab=str(d / "vocab.txt"))
    assert tokenizer.convert_ids_to_tokens(tokenizer("w3 g1")["input_ids"]) == ["[CLS]", "w3", "g1", "[SEP]"]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForMaskedLM(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return str(d)


def synthetic_prepared(num_users: int = 60, length: int = 12, seed: int = 0):
    """A prepared DatasetDict in the layout of ``recpipe.data.prepare`` (item indices 1..NUM_ITEMS)."""
    import datasets

    rng = np.random.default_rng(seed)
    train, valid, test = {"user_id": [], "item_ids": []}, {}, {}
    for split in (valid, test):
        split.update({"user_id": [], "history": [], "target": [], "known_items": []})
    for u in range(num_users):
        start = int(rng.integers(1, NUM_ITEMS + 1))
        seq = [((start - 1 + k) % NUM_ITEMS) + 1 for k in range(length)]
        train["user_id"].append(f"u{u}")
        train["item_ids"].append(seq[:-2])
        for split, cut in ((valid, length - 2), (test, length - 1)):
            split["user_id"].append(f"u{u}")
            split["history"].append(seq[:cut])
            split["target"].append(seq[cut])
            split["known_items"].append(sorted(set(seq[:cut]) - {seq[cut]}))
    items = {
        "item_index": list(range(1, NUM_ITEMS + 1)),
        "item_id": [f"i{i}" for i in range(NUM_ITEMS)],
        "title": [f"w{i}" for i in range(NUM_ITEMS)],
        "text": [item_text(i) for i in range(NUM_ITEMS)],
    }
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(train),
            "valid": datasets.Dataset.from_dict(valid),
            "test": datasets.Dataset.from_dict(test),
            "items": datasets.Dataset.from_dict(items),
            "pretrain": datasets.Dataset.from_dict({"item_id": items["item_id"], "text": items["text"]}),
        }
    )
    stats = {
        "raw": {"users": num_users, "items": NUM_ITEMS, "interactions": num_users * length},
        "filtered": {"users": num_users, "items": NUM_ITEMS, "interactions": num_users * length},
        "config": {"split": "leave_one_out"},
        "tie_break": "synthetic",
    }
    return dd, stats


def save_prepared_as_current(dd, stats, path) -> str:
    """Save a synthetic prepared dataset where ``DataArguments(max_history=10, prepared_dir=path)`` finds it current
    (``recpipe.data.current_stats``: the same configuration and source), so training never re-prepares it."""
    import dataclasses
    import json

    from recpipe.data.prepare import PrepareConfig, source_key

    stats = {
        **stats,
        "config": dataclasses.asdict(PrepareConfig(max_history=10)),
        "source": source_key("movielens-100k"),
    }
    dd.save_to_disk(str(path))
    (path / "stats.json").write_text(json.dumps(stats))
    return str(path)


@pytest.fixture
def prepared_dir(tmp_path):
    """The synthetic dataset saved where ``DataArguments.prepared_dir`` points, with a matching stats.json."""
    return save_prepared_as_current(*synthetic_prepared(), tmp_path / "prepared")
