"""Perturbations are deterministic given the seed and do what they say; the robustness report evaluates each one and
writes its table; the embedding attack hurts the model it attacks; `recpipe robustness` works on a checkpoint."""

import json

import pytest
import torch
from helpers import make_trainer

from recpipe.cli import main as cli_main
from recpipe.robustness.perturbations import TEXT_PERTURBATIONS, drop_history, perturb_texts
from recpipe.robustness.report import RobustnessConfig, attacked_text_cache, robustness_report, to_markdown

TEXTS = [
    "Title: Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "Title: GoldenEye (1995). Genres: Action, Adventure, Thriller.",
    "Title: Four Rooms (1995). Genres: Thriller.",
]


@pytest.mark.parametrize("name", sorted(TEXT_PERTURBATIONS))
def test_text_perturbations_are_deterministic_and_scale_with_severity(name):
    once = perturb_texts(TEXTS * 20, name, 0.5, seed=1)
    assert once == perturb_texts(TEXTS * 20, name, 0.5, seed=1)
    assert perturb_texts(TEXTS, name, 0.0, seed=1) == TEXTS
    # each text's stream depends on (seed, index) only: perturbing a prefix gives the same prefix
    assert perturb_texts(TEXTS * 20, name, 0.5, seed=1)[:3] == perturb_texts(TEXTS, name, 0.5, seed=1)
    changed = sum(a != b for a, b in zip(once, TEXTS * 20))
    assert changed > 0
    if name != "truncation":  # the only one without randomness
        assert perturb_texts(TEXTS * 20, name, 0.5, seed=2) != once


def test_what_each_perturbation_does():
    text = "alpha beta gamma delta epsilon zeta eta theta"
    assert perturb_texts([text], "truncation", 0.5, 0) == ["alpha beta gamma delta"]
    dropped = perturb_texts([text], "word_dropout", 0.5, 0)[0].split()
    assert 1 <= len(dropped) < 8 and all(w in text.split() for w in dropped)
    swapped = perturb_texts([text], "word_swap", 1.0, 0)[0]
    assert swapped == "beta alpha delta gamma zeta epsilon theta eta"
    assert perturb_texts([text], "casing", 1.0, 0)[0].lower() == text
    typos = perturb_texts([text], "char_typos", 1.0, 0)[0].split()
    assert len(typos) == 8 and all(t != w for t, w in zip(typos, text.split()))
    assert perturb_texts(["x"], "word_dropout", 1.0, 0) == ["x"]


def test_drop_history_keeps_the_most_recent_item():
    histories = [[1, 2, 3, 4, 5, 6], [7], [8, 9]]
    thinned = drop_history(histories, 1.0, seed=0)
    assert thinned == [[6], [7], [9]]
    assert drop_history(histories, 0.5, seed=3) == drop_history(histories, 0.5, seed=3)
    assert drop_history(histories, 0.0, seed=3) == histories
    for short, full in zip(drop_history(histories, 0.5, 3), histories):
        assert all(item in full for item in short) and short[-1] == full[-1]


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown perturbations"):
        RobustnessConfig(perturbations=["typo"])
    with pytest.raises(ValueError, match="severities"):
        RobustnessConfig(severities=[0.0])
    with pytest.raises(ValueError, match="unknown text perturbation"):
        perturb_texts(TEXTS, "typo", 0.1, 0)


def test_embedding_attack_raises_the_test_loss(tiny_model_dir, tmp_path):
    trainer, dd, tokens = make_trainer(tiny_model_dir, tmp_path, max_steps=10)
    trainer.train()
    model = trainer.model.eval()
    model.refresh_text_cache(tokens)
    clean = model.text_cache.clone()

    def test_loss(text):
        table = model.item_table(text=text)
        total = 0.0
        for row in dd["test"]:
            users = model.last_user_state(table, torch.tensor([row["history"][-10:]]))
            logits = model.scores(users, table[1:]) / trainer.args.temperature
            total += torch.nn.functional.cross_entropy(logits, torch.tensor([row["target"] - 1])).item()
        return total

    with torch.no_grad():
        attacked = attacked_text_cache(model, dd["test"], tokens, 0.5, temperature=trainer.args.temperature)
        assert torch.equal(model.text_cache, clean)  # the model's own cache is left as it was
        assert test_loss(attacked) > test_loss(clean)


def test_report_rows_markdown_and_cli(tiny_model_dir, tmp_path, prepared_dir):
    trainer, dd, tokens = make_trainer(tiny_model_dir, tmp_path, max_steps=40)
    trainer.train()
    config = RobustnessConfig(
        severities=[0.2, 0.5], perturbations=["word_dropout", "drop_history", "embedding_attack"]
    )
    rows = robustness_report(trainer.model, dd, _tokenizer(trainer), config, 16)
    assert [(r["perturbation"], r["severity"]) for r in rows[::2]] == [
        ("word_dropout", 0.2),
        ("word_dropout", 0.5),
        ("drop_history", 0.2),
        ("drop_history", 0.5),
        ("embedding_attack", 0.2),
        ("embedding_attack", 0.5),
    ]
    assert {r["metric"] for r in rows} == {"ndcg@10", "recall@10"}
    assert all(r["clean"] > 0 for r in rows)
    for r in rows:
        assert r["drop_pct"] == pytest.approx(100 * (r["clean"] - r["perturbed"]) / r["clean"])
    assert "| embedding_attack | 0.5 |" in to_markdown(rows)

    # the CLI on a saved checkpoint, with the prepared data on disk
    trainer.save_model(str(tmp_path / "ckpt"))
    code = cli_main(
        ["robustness", "--checkpoint", str(tmp_path / "ckpt"), "--prepared-dir", prepared_dir]
        + ["--perturbations", "char_typos", "drop_history", "--severities", "0.3", "--metrics", "ndcg@10"]
    )
    assert code == 0
    report = json.loads((tmp_path / "ckpt" / "robustness.json").read_text())
    assert [r["perturbation"] for r in report["rows"]] == ["char_typos", "drop_history"]
    assert report["config"]["seed"] == 0
    assert (tmp_path / "ckpt" / "robustness.png").stat().st_size > 10_000
    assert (tmp_path / "ckpt" / "robustness.md").read_text().startswith("clean: ndcg@10")


def _tokenizer(trainer):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(trainer.model.model_config.model_name_or_path)
