"""The pointwise preference task on tiny random models (an encoder and a causal LM built from config): the
verbalizer's probability is the softmax of the right two logits, the label never reaches the input, LoRA leaves
the base weights intact, the loss is the sum of its logged parts, the LM loss covers item titles only, a checkpoint
reloads to the same probabilities, and the encoder learns a pattern."""

import json
import math

import datasets
import numpy as np
import pytest
import torch
from conftest import NUM_ITEMS
from helpers import write_movielens_100k

from recpipe.ctr.collators import CrossEncoderCollator, PromptCollator, render_prompt
from recpipe.ctr.config import CTRDataArguments, CTRModelArguments, CTRModelConfig, CTRTrainingArguments
from recpipe.ctr.modeling import build_ctr_model, load_ctr_checkpoint, verbalizer_ids
from recpipe.ctr.pipeline import collators
from recpipe.ctr.trainer import CTRTrainer

WORDS = [f"w{i}" for i in range(NUM_ITEMS)] + [f"g{i}" for i in range(5)]


def examples(n: int, seed: int = 0) -> datasets.Dataset:
    """Users like the even items and dislike the odd ones: learnable from the candidate alone."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("user_id", "item_id", "history_item_ids", "history_titles", "history_liked")}
    rows["candidate_title"] = []
    rows.update(candidate_text=[], label=[], timestamp=[])
    for k in range(n):
        history = rng.integers(0, NUM_ITEMS, 10).tolist()
        item = int(rng.integers(0, NUM_ITEMS))
        rows["user_id"].append(f"u{k % 7}")
        rows["item_id"].append(f"i{item}")
        rows["history_item_ids"].append([f"i{h}" for h in history])
        rows["history_titles"].append([f"w{h}" for h in history])
        rows["history_liked"].append([h % 2 == 0 for h in history])
        rows["candidate_title"].append(f"w{item}")
        rows["candidate_text"].append(f"Title: w{item}. Genres: g{item % 5}.")
        rows["label"].append(int(item % 2 == 0))
        rows["timestamp"].append(k)
    return datasets.Dataset.from_dict(rows)


@pytest.fixture(scope="session")
def tiny_causal_lm_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from recpipe.ctr.collators import INSTRUCTION

    d = tmp_path_factory.mktemp("tiny-llama")
    text = INSTRUCTION + " User Preference Unpreference Whether the user will like target movie About it Title Genres"
    words = set(pre_tokenizers.Whitespace().pre_tokenize_str(text))
    vocab = ["<pad>", "<unk>", "<s>", "</s>", "Yes", "No", "Answer", ":", '"', ",", ".", "?", '"?', '".', "'", "s"]
    vocab += sorted({w for w, _ in words} - set(vocab)) + WORDS
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return str(d)


def causal_args(path, **kw):
    base = dict(model_family="causal_lm", model_name_or_path=path, lora_target_modules=["q_proj", "v_proj"])
    return CTRModelArguments(**{**base, **kw})


def ctr_model(margs: CTRModelArguments, total_steps=None):
    """(model, tokenizer) built as ``run_ctr`` builds them, from command-line model arguments."""
    return build_ctr_model(CTRModelConfig.from_arguments(margs), total_steps)


def encoder_args(path, **kw):
    base = dict(model_family="encoder", model_name_or_path=path, lora_target_modules=["query", "value"])
    return CTRModelArguments(**{**base, **kw})


def train_args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        use_cpu=True,
        seed=0,
    )
    return CTRTrainingArguments(**{**base, **kw})


def make_trainer(margs, tmp_path, n=64, **targs):
    args = train_args(tmp_path, **targs)
    model, tokenizer = ctr_model(margs, args.max_steps)
    data_args = CTRDataArguments(item_noun="movie", max_length=160)
    train_collator, eval_collator = collators(margs, data_args, args, tokenizer)
    trainer = CTRTrainer(
        model=model,
        args=args,
        train_dataset=examples(n),
        eval_dataset=examples(48, seed=1),
        data_collator=train_collator,
        eval_collator=eval_collator,
        processing_class=tokenizer,
    )
    return trainer, tokenizer


def test_verbalizer_probability_is_the_softmax_of_the_answer_logits(tiny_causal_lm_dir):
    model, tokenizer = ctr_model(causal_args(tiny_causal_lm_dir, peft_type="none"))
    model.eval()
    yes, no = verbalizer_ids(tokenizer, " Yes", " No")
    assert tokenizer.convert_ids_to_tokens([yes, no]) == ["Yes", "No"]
    batch = PromptCollator(tokenizer, "movie", 200)(list(examples(5)))
    with torch.no_grad():
        p = torch.sigmoid(model(**batch)["logits"])
        full = model.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    last = batch["attention_mask"].sum(1) - 1
    at_answer = full[torch.arange(5), last]
    expected = torch.softmax(at_answer[:, [yes, no]], dim=-1)[:, 0]
    assert torch.allclose(p, expected, atol=1e-5)
    assert ((p > 0) & (p < 1)).all()
    # the answer position is each row's own last prompt token, whatever the padding
    assert (batch["input_ids"][torch.arange(5), last] == tokenizer.convert_tokens_to_ids(":")).all()
    with pytest.raises(ValueError, match="tokens"):
        verbalizer_ids(tokenizer, " Yes indeed", " No")


def test_the_label_never_reaches_the_input(tiny_causal_lm_dir, tiny_model_dir):
    rows = list(examples(6))
    flipped = [{**r, "label": 1 - r["label"]} for r in rows]
    _, causal_tok = ctr_model(causal_args(tiny_causal_lm_dir))
    _, encoder_tok = ctr_model(encoder_args(tiny_model_dir))
    for collate in (
        PromptCollator(causal_tok, "movie", 200, lm_labels=True),
        CrossEncoderCollator(encoder_tok, 128),
    ):
        a, b = collate(rows), collate(flipped)
        assert set(a) == set(b)
        for key in a:
            if key != "labels":
                assert torch.equal(a[key], b[key]), key
        assert not torch.equal(a["labels"], b["labels"])
    for r in rows:
        text, _ = render_prompt(r, "movie")
        assert text.endswith("Answer:") and "Yes" not in text.split("\n", 1)[1]


def test_lm_loss_targets_only_item_title_tokens(tiny_causal_lm_dir):
    _, tokenizer = ctr_model(causal_args(tiny_causal_lm_dir))
    batch = PromptCollator(tokenizer, "movie", 200, lm_labels=True)(list(examples(4)))
    labelled = batch["lm_labels"][batch["lm_labels"] != -100]
    words = set(tokenizer.convert_ids_to_tokens(labelled.tolist()))
    assert words and words <= set(WORDS)
    row = examples(1)[0]
    per_row = (batch["lm_labels"][0] != -100).sum().item()
    assert per_row == len(row["history_titles"]) + 1  # every history title and the candidate, one token each here


def test_long_prompts_drop_the_oldest_history_first(tiny_causal_lm_dir):
    _, tokenizer = ctr_model(causal_args(tiny_causal_lm_dir))
    row = {
        "history_titles": [f"w{i}" for i in range(10)],  # oldest first
        "history_liked": [True, False] * 5,
        "candidate_title": "w20",
        "candidate_text": "Title: w20. Genres: g0.",
        "label": 1,
    }
    full = PromptCollator(tokenizer, "movie", 1000)([row])["input_ids"]
    cut = PromptCollator(tokenizer, "movie", full.shape[1] - 3)([row])["input_ids"]
    assert cut.shape[1] <= full.shape[1] - 3
    kept = set(tokenizer.convert_ids_to_tokens(cut[0].tolist()))
    assert "w0" not in kept and {"w9", "w8", "w20"} <= kept


@pytest.mark.parametrize("family", ["encoder", "causal_lm"])
def test_lora_keeps_base_weights_and_the_loss_is_the_sum_of_its_parts(
    family, tiny_model_dir, tiny_causal_lm_dir, tmp_path
):
    margs = encoder_args(tiny_model_dir) if family == "encoder" else causal_args(tiny_causal_lm_dir)
    trainer, _ = make_trainer(margs, tmp_path)
    named = dict(trainer.model.named_parameters())
    adapters = [n for n in named if "lora_" in n]
    base = [n for n, p in named.items() if not p.requires_grad]
    assert adapters and base
    before = {n: named[n].detach().clone() for n in adapters + base}
    trainer.train()
    assert all(torch.equal(before[n], named[n]) for n in base), "a base weight changed"
    assert any(not torch.equal(before[n], named[n]) for n in adapters), "no adapter changed"
    self_supervised = "mlm_loss" if family == "encoder" else "lm_loss"
    logs = [h for h in trainer.state.log_history if "ctr_loss" in h]
    assert len(logs) == 3
    weight = trainer.args.mlm_weight if family == "encoder" else trainer.args.lm_weight
    assert weight == 0.1  # parts are logged unweighted; the total weighs them
    for h in logs:
        assert h[self_supervised] > 0 and h["perplexity"] == pytest.approx(math.exp(h[self_supervised]), rel=1e-6)
        assert h["loss"] == pytest.approx(h["ctr_loss"] + weight * h[self_supervised], rel=1e-4)


@pytest.mark.parametrize("family", ["encoder", "causal_lm"])
def test_adalora_prunes_its_rank_budget_and_its_regulariser_is_a_logged_part(
    family, tiny_model_dir, tiny_causal_lm_dir, tmp_path
):
    from recpipe.peft_utils import adalora_rank_budget

    kw = dict(peft_type="adalora", adalora_init_r=6, lora_r=2)
    margs = encoder_args(tiny_model_dir, **kw) if family == "encoder" else causal_args(tiny_causal_lm_dir, **kw)
    trainer, _ = make_trainer(margs, tmp_path, max_steps=30, logging_steps=5)
    backbone = trainer.model.encoder if family == "encoder" else trainer.model.lm
    named = dict(trainer.model.named_parameters())
    base = {n: p.detach().clone() for n, p in named.items() if not p.requires_grad}
    assert base
    initial = adalora_rank_budget(backbone)
    trainer.train()
    assert adalora_rank_budget(backbone) < initial
    assert all(torch.equal(base[n], named[n]) for n in base), "a base weight changed"
    self_supervised = "mlm_loss" if family == "encoder" else "lm_loss"
    logs = [h for h in trainer.state.log_history if "ctr_loss" in h]
    assert logs and all(h["orth_loss"] > 0 for h in logs)
    for h in logs:
        weight = trainer.args.mlm_weight if family == "encoder" else trainer.args.lm_weight
        assert h["loss"] == pytest.approx(h["ctr_loss"] + weight * h[self_supervised] + h["orth_loss"], rel=1e-4)


def test_encoder_learns_the_pattern_and_the_checkpoint_reloads(tiny_model_dir, tmp_path):
    margs = encoder_args(tiny_model_dir, peft_type="none", pooling="cls", head_dropout=0.0)
    trainer, _ = make_trainer(margs, tmp_path, n=256, max_steps=150, learning_rate=3e-3, mlm_weight=0.0)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_auc"] > 0.85 and after["eval_auc"] > before["eval_auc"] + 0.2, (before, after)
    assert {"eval_gauc", "eval_log_loss", "eval_precision", "eval_recall", "eval_f1"} <= set(after)
    trainer.save_model(str(tmp_path / "ckpt"))
    model, _, _ = load_ctr_checkpoint(tmp_path / "ckpt")
    trainer.model = model
    again = trainer.evaluate()
    assert again["eval_auc"] == after["eval_auc"] and again["eval_log_loss"] == pytest.approx(after["eval_log_loss"])
    # a checkpoint written before the model config stored the command-line arguments, the retrieval flags included
    import dataclasses
    import json

    saved = json.loads((tmp_path / "ckpt" / "ctr_config.json").read_text())
    legacy = {k: v for k, v in saved.items() if k != "model_config"}
    legacy["model_args"] = {**dataclasses.asdict(margs), "use_text": True, "hidden_size": 128, "init_from": None}
    (tmp_path / "ckpt" / "ctr_config.json").write_text(json.dumps(legacy))
    old, _, _ = load_ctr_checkpoint(tmp_path / "ckpt")
    assert old.model_config == model.model_config
    trainer.model = old
    assert trainer.evaluate()["eval_auc"] == after["eval_auc"]


def test_history_like_rate_is_smoothed_log_odds_of_the_marks_only(tiny_model_dir):
    from recpipe.ctr.features import history_like_logodds

    rows = [{"history_liked": [True] * 7 + [False] * 3, "label": 0}, {"history_liked": [], "label": 1}]
    assert history_like_logodds(rows).tolist() == pytest.approx([np.log(8 / 4), 0.0])
    model, tokenizer = ctr_model(encoder_args(tiny_model_dir, history_feature=True))
    model.eval()
    batch = CrossEncoderCollator(tokenizer)(list(examples(8)))
    assert "history_like_logodds" in batch
    without = dict(batch, history_like_logodds=torch.zeros(8))
    # the wide term starts at zero: the model begins as the one without it
    assert torch.equal(model(**batch)["logits"], model(**without)["logits"])
    with pytest.raises(ValueError, match="history_like_logodds"):
        model(**{k: v for k, v in batch.items() if k != "history_like_logodds"})


def by_history(row):
    return {"label": int(np.mean(row["history_liked"]) > 0.5)}


@pytest.mark.parametrize("family", ["encoder", "causal_lm"])
def test_history_term_learns_a_like_rate_pattern_and_is_saved(family, tiny_model_dir, tiny_causal_lm_dir, tmp_path):
    """Labels that follow the history's like rate (no item signal): the wide term learns it and is checkpointed."""
    path = tiny_model_dir if family == "encoder" else tiny_causal_lm_dir
    margs = (encoder_args if family == "encoder" else causal_args)(path, history_feature=True)
    trainer, _ = make_trainer(margs, tmp_path, max_steps=40, learning_rate=5e-2, mlm_weight=0.0, lm_weight=0.0)

    trainer.train_dataset = examples(128).map(by_history)
    trainer.eval_dataset = examples(48, seed=1).map(by_history)
    trainer.train()
    assert trainer.evaluate()["eval_auc"] > 0.9
    weight = trainer.model.wide.linear.weight
    assert weight.item() > 0.1, "the like-rate term did not learn that likes predict a like"
    trainer.save_model(str(tmp_path / "ckpt"))
    model, _, _ = load_ctr_checkpoint(tmp_path / "ckpt")
    assert torch.equal(model.wide.linear.weight, weight.detach())


def test_history_term_trains_on_its_own_learning_rate(tiny_model_dir, tmp_path):
    """A 10-step run at learning_rate 1e-4: the like-rate weight only gets somewhere on wide_learning_rate."""
    margs = encoder_args(tiny_model_dir, history_feature=True)
    moved = {}
    for wide_lr in (None, 5e-2):
        trainer, _ = make_trainer(
            margs, tmp_path / str(wide_lr), max_steps=10, learning_rate=1e-4, wide_learning_rate=wide_lr
        )
        trainer.train_dataset = examples(80).map(by_history)
        trainer.train()
        history_params = set(trainer.model.wide.parameters())
        initial_lrs = {
            group["initial_lr"] for group in trainer.optimizer.param_groups if history_params & set(group["params"])
        }
        assert initial_lrs == {wide_lr or 1e-4}
        moved[wide_lr] = trainer.model.wide.linear.weight.abs().item()
    assert moved[5e-2] > 50 * moved[None] > 0


def test_wide_learning_rate_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="wide_learning_rate"):
        train_args(tmp_path, wide_learning_rate=0.0)


def test_item_like_rate_counts_every_mark_once_and_other_users_only():
    from recpipe.ctr.features import ITEM_FEATURE, add_item_like_logodds, item_like_logodds, user_fold

    def rows(*spec):
        keys = ("user_id", "item_id", "label", "history_item_ids", "history_liked", "timestamp")
        return datasets.Dataset.from_dict({k: [row[n] for row in spec] for n, k in enumerate(keys)})

    assert len({user_fold(u, 5) for u in ("u1", "u2", "u3")}) == 3  # three users, three folds
    train = rows(
        ("u1", "a", 1, ["c"], [True], 3),
        ("u2", "a", 1, [], [], 1),
        ("u3", "a", 0, ["b"], [False], 2),
        ("u1", "b", 0, ["c", "a"], [True, True], 4),  # u1's later example: its history repeats row 0's label
    )
    test = rows(("u4", "a", 0, [], [], 9), ("u4", "b", 0, [], [], 9), ("u4", "new", 1, [], [], 9))
    dd, table = add_item_like_logodds(datasets.DatasetDict(train=train, test=test), strength=2.0)

    def logodds(likes, total, prior=0.5):
        rate = (likes + 2.0 * prior) / (total + 2.0)
        return np.log(rate / (1 - rate))

    # each training row sees the marks of the other folds' users, candidates and histories alike
    expected = [logodds(1, 2), logodds(1, 2), logodds(2, 2), logodds(0, 1)]
    assert dd["train"][ITEM_FEATURE] == pytest.approx(expected, abs=1e-6)
    # evaluation rows see every training mark, one per (user, item); an unseen item gets the overall rate
    assert dd["test"][ITEM_FEATURE] == pytest.approx([logodds(2, 3), logodds(0, 2), 0.0], abs=1e-6)
    # the table a checkpoint keeps scores new rows exactly as the test rows were scored, also after a JSON trip
    table = json.loads(json.dumps(table))
    assert table["counts"] == {"a": [2, 3], "b": [0, 2], "c": [1, 1]} and table["prior"] == 0.5
    assert item_like_logodds(test, table) == dd["test"][ITEM_FEATURE]


def test_item_like_rate_never_depends_on_the_rows_own_label():
    """Flip one rating in the raw data: the example's label changes and so do the history marks of the user's
    later examples, but never that example's own item rate (leave-one-out would: it ranks the label backwards)."""
    from helpers import make_tables, random_rows

    from recpipe.ctr.features import cross_fitted_item_like_rate, item_like_counts
    from recpipe.data.ctr import CTRConfig, build_ctr_examples

    raw = random_rows(n_users=20, per_user=15, n_items=25)
    config = CTRConfig(history_len=5, min_history=3)

    def own_rates(raw_rows):
        train = build_ctr_examples(make_tables(raw_rows), config)[0]["train"]
        rates = cross_fitted_item_like_rate(train, prior=0.5)
        return {(u, i): (r, y) for u, i, r, y in zip(train["user_id"], train["item_id"], rates, train["label"])}

    before = own_rates(raw)
    assert len(set(rates for rates, _ in before.values())) > 5
    flipped = 0
    for k in range(0, len(raw), 7):
        u, i, t, rating = raw[k]
        if (u, i) not in before:
            continue  # not a training example (too short a history, or valid/test)
        changed = raw[:k] + [(u, i, t, 6.0 - rating if rating != 3.0 else 5.0)] + raw[k + 1 :]
        after = own_rates(changed)
        assert after[(u, i)][1] != before[(u, i)][1]  # the label flipped
        assert after[(u, i)][0] == before[(u, i)][0]  # its own rate did not
        flipped += 1
    assert flipped >= 5
    # and the flip does reach the counts that later rows and the evaluation see
    changed_train = build_ctr_examples(make_tables(changed), config)[0]["train"]
    train = build_ctr_examples(make_tables(raw), config)[0]["train"]
    assert item_like_counts(train)[0] != item_like_counts(changed_train)[0]


def test_item_term_learns_item_quality_with_the_encoder_held_still(tiny_model_dir, tmp_path):
    """Labels follow the item (even items liked): with the encoder's learning rate ~0, only the item like-rate
    term can learn them, and it does; the collator passes the column on."""
    from recpipe.ctr.features import ITEM_FEATURE, add_item_like_logodds, item_like_logodds

    margs = encoder_args(tiny_model_dir, item_feature=True)
    trainer, _ = make_trainer(margs, tmp_path, max_steps=30, learning_rate=1e-8, mlm_weight=0.0)
    dd, table = add_item_like_logodds(datasets.DatasetDict(train=examples(256), valid=examples(48, seed=1)))
    trainer.train_dataset, trainer.eval_dataset = dd["train"], dd["valid"]
    trainer.extra_config = {"item_like_table": table}  # as run_ctr passes it
    before = trainer.evaluate()["eval_auc"]
    trainer.train()
    assert trainer.model.wide.linear.weight.item() > 0.1
    after = trainer.evaluate()
    assert after["eval_auc"] > max(0.9, before)
    # a checkpoint alone scores new rows: the item rates come from the table saved with it
    trainer.save_model(str(tmp_path / "ckpt"))
    trainer.model, _, config = load_ctr_checkpoint(tmp_path / "ckpt")
    fresh = examples(48, seed=1)
    fresh = fresh.add_column(ITEM_FEATURE, item_like_logodds(fresh, config["item_like_table"]))
    assert trainer.evaluate(fresh)["eval_log_loss"] == pytest.approx(after["eval_log_loss"], abs=1e-6)


def test_run_ctr_end_to_end_saves_what_scoring_new_rows_needs(tiny_model_dir, tmp_path):
    from recpipe.ctr.features import ITEM_FEATURE, item_like_logodds
    from recpipe.ctr.pipeline import ctr_data, fixed_subset, run_ctr

    write_movielens_100k(tmp_path / "ml")
    data_args = CTRDataArguments(data_dir=str(tmp_path / "ml"), item_noun="movie", max_length=128)
    margs = encoder_args(tiny_model_dir, history_feature=True, item_feature=True)
    args = train_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2, mlm_weight=0.1)
    metrics = run_ctr(data_args, margs, args)
    assert {"test_auc", "test_gauc", "test_log_loss", "test_f1"} <= set(metrics)
    assert (tmp_path / "out" / "test_results.json").is_file()
    # the checkpoint's table gives new rows the item rates the test rows had
    model, _, config = load_ctr_checkpoint(tmp_path / "out")
    assert config["data_args"]["data_dir"] == str(tmp_path / "ml")
    dd, _ = ctr_data(data_args)
    marks = {}  # every (user, item) rating the training examples hold, as label or history mark
    for row in dd["train"]:  # the first mark of a (user, item) pair counts, histories before the candidate
        for h, v in zip(row["history_item_ids"], row["history_liked"]):
            marks.setdefault((row["user_id"], h), int(v))
        marks.setdefault((row["user_id"], row["item_id"]), row["label"])
    expected = {}
    for (_, item), liked in marks.items():
        expected[item] = [expected.get(item, [0, 0])[0] + liked, expected.get(item, [0, 0])[1] + 1]
    assert config["item_like_table"]["counts"] == expected
    test = fixed_subset(dd["test"], data_args.max_test_examples, args.seed)
    values = item_like_logodds(test, config["item_like_table"])
    assert len(set(values)) > 1 and all(np.isfinite(values))
    assert model.wide.features == ["history_like_logodds", ITEM_FEATURE]


def test_baselines_score_the_same_test_rows_with_the_wide_inputs():
    """Labels follow the item (even items liked) and so do the history marks: the item like rate — learned from
    the candidates' labels and the histories' marks — ranks the test rows almost perfectly, the history like rate
    (no item information) does not, and the logistic regression on both follows the item rate."""
    from recpipe.ctr.baselines import ctr_baselines

    scores = ctr_baselines(examples(128), examples(64, seed=1))
    assert set(scores) == {"history_like_rate", "item_like_rate", "logistic_regression"}
    assert scores["item_like_rate"]["test_auc"] > 0.95
    assert scores["history_like_rate"]["test_auc"] < 0.8
    assert scores["logistic_regression"]["test_auc"] > 0.95
    assert {"test_gauc", "test_log_loss", "test_f1"} <= set(scores["logistic_regression"])
