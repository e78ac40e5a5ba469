"""The trainer's promises on tiny random models: the loss is the sum of its logged parts, what should train does,
what should stay frozen does, checkpoints reload exactly, pretraining lowers held-out MLM loss."""

import json
import math

import pytest
import torch
from conftest import NUM_ITEMS, item_text, synthetic_prepared
from helpers import make_trainer, model_args, rec_model, training_args
from transformers import TrainerCallback

from recpipe.collators import PairCollator
from recpipe.configs import DataArguments
from recpipe.evaluation import evaluate_split
from recpipe.modeling import UserTower, load_checkpoint
from recpipe.peft_utils import adalora_rank_budget
from recpipe.pipeline import run, train_stage


def test_combined_loss_is_the_weighted_sum_of_logged_parts(tiny_model_dir, tmp_path):
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "rec_loss" in h]
    assert len(logs) == 4
    args = trainer.args
    assert (args.mlm_weight, args.rel_weight) == (0.5, 0.3)
    for h in logs:
        assert h["mlm_loss"] > 0 and h["rel_loss"] > 0 and h["rec_loss"] > 0
        # each part is logged unweighted, the total is weighted by the run's arguments
        total = h["rec_loss"] + args.mlm_weight * h["mlm_loss"] + args.rel_weight * h["rel_loss"]
        assert h["loss"] == pytest.approx(total, rel=1e-4)
        assert h["perplexity"] == pytest.approx(math.exp(h["mlm_loss"]), rel=1e-6)


def test_every_trainable_parameter_changes_full_finetuning(tiny_model_dir, tmp_path):
    margs = model_args(tiny_model_dir, peft_type="none", use_item_ids=True)
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, margs=margs, max_fresh_items=NUM_ITEMS)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n])]
    assert not unchanged, f"parameters that did not train: {unchanged}"


@pytest.mark.parametrize("peft_type", ["lora", "adalora", "ia3"])
def test_peft_keeps_base_weights_and_trains_adapters(tiny_model_dir, tmp_path, peft_type):
    margs = model_args(tiny_model_dir, peft_type=peft_type)
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, margs=margs, max_steps=6)
    named = dict(trainer.model.named_parameters())
    adapter_keys = [n for n in named if any(k in n for k in ("lora_", "ia3_"))]
    base_keys = [n for n, p in named.items() if n.startswith("encoder.") and not p.requires_grad]
    assert adapter_keys and base_keys
    before = {n: named[n].detach().clone() for n in adapter_keys + base_keys}
    trainer.train()
    for n in base_keys:
        assert torch.equal(before[n], named[n]), f"base weight {n} changed"
    changed = [n for n in adapter_keys if not torch.equal(before[n], named[n])]
    assert changed, "no adapter weight changed"
    assert named["user_tower.norm.weight"].requires_grad and named["projection.weight"].requires_grad


def test_adalora_rank_budget_shrinks_and_regulariser_is_in_the_loss(tiny_model_dir, tmp_path):
    margs = model_args(tiny_model_dir, peft_type="adalora", adalora_init_r=6, lora_r=2)
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, margs=margs, max_steps=30)
    initial = adalora_rank_budget(trainer.model.encoder)
    trainer.train()
    final = adalora_rank_budget(trainer.model.encoder)
    assert final < initial, (initial, final)
    logs = [h for h in trainer.state.log_history if "orth_loss" in h]
    assert logs and all(h["orth_loss"] > 0 for h in logs)
    for h in logs:
        args = trainer.args  # parts are logged unweighted; orth_loss as added (scaled by AdaLoRA's own weight)
        parts = h["rec_loss"] + args.mlm_weight * h["mlm_loss"] + args.rel_weight * h["rel_loss"] + h["orth_loss"]
        assert h["loss"] == pytest.approx(parts, rel=1e-4)


def test_checkpoint_reloads_to_identical_scores(tiny_model_dir, tmp_path):
    trainer, dd, tokens = make_trainer(tiny_model_dir, tmp_path, eval_strategy="no")
    trainer.train()
    trainer.save_model(str(tmp_path / "ckpt"))
    metrics = evaluate_split(trainer.model, dd["test"], tokens, prefix="test_")
    model, _, config = load_checkpoint(tmp_path / "ckpt")
    assert config["model_config"]["num_items"] == NUM_ITEMS
    assert "init_from" not in config["model_config"]  # the model config holds no command-line-only flag
    again = evaluate_split(model, dd["test"], tokens, prefix="test_")
    assert metrics == again
    from recpipe.evaluation import item_vectors

    assert torch.equal(item_vectors(trainer.model, tokens), item_vectors(model, tokens))


def test_checkpoint_of_the_old_format_still_loads(tiny_model_dir, tmp_path):
    """Checkpoints written before the model config stored the command-line ModelArguments (`model_args`) and
    num_items / max_history at the top level; they load to the same scores."""
    import dataclasses
    import shutil

    trainer, dd, tokens = make_trainer(tiny_model_dir, tmp_path, eval_strategy="no", max_steps=2)
    trainer.train()
    trainer.save_model(str(tmp_path / "new"))
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    saved = json.loads((tmp_path / "new" / "recpipe_config.json").read_text())
    legacy = {k: v for k, v in saved.items() if k != "model_config"}
    legacy.update(
        model_args=dataclasses.asdict(model_args(tiny_model_dir)),
        num_items=NUM_ITEMS,
        max_history=10,
        stage="finetune",
    )
    (tmp_path / "old" / "recpipe_config.json").write_text(json.dumps(legacy))
    old, _, _ = load_checkpoint(tmp_path / "old")
    new, _, _ = load_checkpoint(tmp_path / "new")
    assert old.model_config == new.model_config
    assert evaluate_split(old, dd["test"], tokens) == evaluate_split(new, dd["test"], tokens)


def test_user_tower_train_and_eval_modes_agree_without_dropout():
    tower = UserTower(dim=8, max_len=6, layers=2, heads=2, dropout=0.0)
    x = torch.randn(3, 6, 8)
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    tower.train()
    a = tower(x, mask)
    tower.eval()
    with torch.no_grad():
        b = tower(x, mask)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert torch.allclose(a[mask], b[mask], atol=1e-5)
    # causal: the state at position t does not depend on later items
    x2 = x.clone()
    x2[0, 4:] = torch.randn(2, 8)
    with torch.no_grad():
        c = tower(x2, mask)
    assert torch.allclose(b[0, :4], c[0, :4], atol=1e-5)


def heldout_mlm_loss(model, tokenizer, texts, seed=0):
    from transformers import DataCollatorForLanguageModeling

    enc = tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3)
    torch.manual_seed(seed)
    ids, labels = collator.torch_mask_tokens(enc["input_ids"].clone(), enc["special_tokens_mask"])
    model.eval()
    with torch.no_grad():
        _, loss = model.encode_text(ids, enc["attention_mask"], labels)
    return loss.item()


def test_pretraining_lowers_heldout_mlm_loss(tiny_model_dir, tmp_path):
    dd, stats = synthetic_prepared()
    heldout = [item_text(i) for i in range(NUM_ITEMS)]
    margs = model_args(tiny_model_dir, peft_type="none")
    args = training_args(tmp_path, max_steps=40, learning_rate=1e-2, mlm_weight=1.0, rel_weight=0.5)
    data_args = DataArguments(max_history=10, prepared_dir=str(tmp_path / "unused"))
    model0, tokenizer = rec_model(margs)
    before = heldout_mlm_loss(model0, tokenizer, heldout)
    trainer, _ = train_stage("pretrain", data_args, margs, args, dd, stats)
    after = heldout_mlm_loss(trainer.model, tokenizer, heldout)
    assert after < before - 0.3, (before, after)
    logs = [h for h in trainer.state.log_history if "mlm_loss" in h]
    assert logs and all("rel_loss" in h for h in logs)
    assert isinstance(trainer.data_collator, PairCollator)


def test_pipeline_end_to_end_learns_and_saves(tiny_model_dir, tmp_path, prepared_dir):
    margs = model_args(tiny_model_dir, use_item_ids=True)
    args = training_args(
        tmp_path,
        max_steps=120,
        learning_rate=2e-2,
        eval_strategy="steps",
        eval_steps=60,
        save_strategy="steps",
        save_steps=60,
        load_best_model_at_end=True,
        metric_for_best_model="ndcg@10",
        stages=["pretrain", "finetune"],
        pretrain_max_steps=5,
    )
    data_args = DataArguments(max_history=10, prepared_dir=prepared_dir)
    metrics = run(data_args, margs, args)
    # the synthetic pattern (i is followed by i+1) is learnable: far above chance (10 of the 30 unseen items)
    assert metrics["test_recall@10"] > 0.45
    out = tmp_path / "out"
    assert json.loads((out / "test_results.json").read_text())["test_ndcg@10"] == pytest.approx(
        metrics["test_ndcg@10"]
    )
    assert (out / "README.md").is_file() and (out / "pretrain" / "recpipe_weights.safetensors").is_file()
    eval_logs = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "eval_ndcg@10" in h]
    assert len(eval_logs) == 2


def test_pretraining_ignores_the_frozen_encoder_phase_of_fine_tuning(tiny_model_dir, tmp_path):
    """``frozen_encoder_steps`` belongs to fine-tuning: pretraining trains only the encoder, from its first step."""
    dd, stats = synthetic_prepared()
    margs = model_args(tiny_model_dir)
    args = training_args(tmp_path, max_steps=4, mlm_weight=1.0, rel_weight=0.5, frozen_encoder_steps=100)
    data_args = DataArguments(max_history=10, prepared_dir=str(tmp_path / "unused"))
    trainer, _ = train_stage("pretrain", data_args, margs, args, dd, stats)
    logs = [h for h in trainer.state.log_history if "mlm_loss" in h]
    assert logs and all("rel_loss" in h for h in logs)


def test_pipeline_reports_the_cold_split_beside_the_warm_one(tiny_model_dir, tmp_path):
    from conftest import save_prepared_as_current

    dd, stats = synthetic_prepared()
    dd["test_cold"] = dd["test"].select(range(10))
    metrics = run(
        DataArguments(max_history=10, prepared_dir=save_prepared_as_current(dd, stats, tmp_path / "prepared")),
        model_args(tiny_model_dir),
        training_args(tmp_path, max_steps=2),
    )
    assert {"test_ndcg@10", "test_cold_ndcg@10", "test_cold_recall@10"} <= set(metrics)


def test_items_never_in_training_are_no_negatives():
    from recpipe.losses import SoftmaxRecLoss

    class Dot:
        @staticmethod
        def scores(users, items):
            return users @ items.T

    table = torch.randn(6, 4, requires_grad=True)
    users, targets = torch.randn(2, 3, 4), torch.tensor([[1, 2, 0], [3, 1, 2]])
    popularity = torch.tensor([0, 5, 3, 2, 0, 0])  # items 4 and 5 never occur in training
    loss = SoftmaxRecLoss(temperature=1.0)(Dot, users, table, targets, popularity)
    loss.backward()
    assert table.grad[4:].abs().sum() == 0 and table.grad[0].abs().sum() == 0
    assert table.grad[1:4].abs().sum() > 0


@pytest.mark.parametrize("peft_type", ["lora", "adalora"])
def test_frozen_encoder_phase_trains_towers_first_then_adapters(tiny_model_dir, tmp_path, peft_type):
    """``frozen_encoder_steps``: the first steps leave every adapter weight bit-identical and log no MLM/relation
    part; the adapters train after, with the combined loss."""
    margs = model_args(tiny_model_dir, peft_type=peft_type, use_item_ids=True)
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, margs=margs, max_steps=3, frozen_encoder_steps=3)
    named = dict(trainer.model.named_parameters())
    adapters = {n: p.detach().clone() for n, p in named.items() if "lora_" in n}
    towers = {n: p.detach().clone() for n, p in named.items() if n.startswith(("id_embedding", "user_tower"))}
    trainer.train()
    assert all(torch.equal(adapters[n], named[n]) for n in adapters), "an adapter trained in the frozen phase"
    assert any(not torch.equal(towers[n], named[n]) for n in towers), "the towers did not train"
    logs = [h for h in trainer.state.log_history if "rec_loss" in h]
    assert logs and not any("mlm_loss" in h or "rel_loss" in h for h in logs)

    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, margs=margs, max_steps=6, frozen_encoder_steps=3)
    named = dict(trainer.model.named_parameters())
    adapters = {n: p.detach().clone() for n, p in named.items() if "lora_" in n}
    trainer.train()
    assert any(not torch.equal(adapters[n], named[n]) for n in adapters), "no adapter trained after the phase"
    later = [h for h in trainer.state.log_history if "rec_loss" in h and h["step"] > 3]
    assert later and all(h["mlm_loss"] > 0 for h in later)


def group_learning_rates(trainer, steps: int) -> tuple[list[int], list[int], list[list[float]]]:
    """The encoder's and the towers' optimizer groups (indices), and every group's learning rate at each of
    ``steps`` scheduler steps."""
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    groups = trainer.optimizer.param_groups
    encoder = [i for i, g in enumerate(groups) if g["label"] == "encoder"]
    towers = [i for i, g in enumerate(groups) if g["label"] == ""]
    assert encoder and towers
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in groups])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return encoder, towers, lrs


def test_encoder_phase_schedule_starts_the_adapters_at_their_own_peak(tiny_model_dir, tmp_path):
    """``encoder_phase_schedule``: the encoder's groups warm up from the phase's first step and decay to 0 at the end
    (not the shared schedule's decayed tail); the towers keep the shared schedule."""
    margs = model_args(tiny_model_dir, peft_type="lora", use_item_ids=True)
    targs = dict(max_steps=20, frozen_encoder_steps=10, warmup_steps=2, learning_rate=1e-3, lr_scheduler_type="linear")
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, margs=margs, encoder_phase_schedule=True, **targs)
    encoder, towers, lrs = group_learning_rates(trainer, steps=20)
    groups = trainer.optimizer.param_groups
    assert all(
        n.startswith("encoder.")
        for n, p in trainer.model.named_parameters()
        if p.requires_grad and any(p is q for i in encoder for q in groups[i]["params"])
    )
    at = lambda step, i: lrs[step][i]  # noqa: E731
    for i in encoder:
        assert [at(s, i) for s in (0, 9)] == [0.0, 0.0]  # nothing before the phase
        assert at(10, i) == pytest.approx(5e-4) and at(11, i) == pytest.approx(1e-3)  # warmup, then the peak
        assert at(19, i) == pytest.approx(1e-3 / 8)  # linear decay to 0 at step 20
    for i in towers:  # the shared schedule: at step 11 it has decayed to 1/2 of the peak
        assert at(11, i) == pytest.approx(1e-3 * 9 / 18)

    with pytest.raises(ValueError, match="frozen_encoder_steps"):
        training_args(tmp_path, encoder_phase_schedule=True, frozen_encoder_steps=0)


def test_encoder_phase_towers_false_holds_the_towers_in_the_encoder_phase(tiny_model_dir, tmp_path):
    """``encoder_phase_towers: false``: the towers follow the shared schedule until the encoder phase and stop there
    (learning rate 0: AdamW then moves them neither by gradient nor by weight decay); the encoder keeps its own."""
    margs = model_args(tiny_model_dir, peft_type="lora", use_item_ids=True)
    targs = dict(max_steps=20, frozen_encoder_steps=10, warmup_steps=2, learning_rate=1e-3, lr_scheduler_type="linear")
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, margs=margs, encoder_phase_towers=False, **targs)
    encoder, towers, lrs = group_learning_rates(trainer, steps=20)
    for i in towers:
        assert lrs[9][i] == pytest.approx(1e-3 * 11 / 18) and all(lrs[s][i] == 0.0 for s in range(10, 20))
    for i in encoder:  # the shared schedule's tail, as without the option
        assert lrs[11][i] == pytest.approx(1e-3 * 9 / 18)

    # trained: the tower weights at the end are those of the end of the cached-vector phase
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path / "run", margs=margs, encoder_phase_towers=False, **targs)
    snapshots = {}

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (10, 20):
                snapshots[state.global_step] = {
                    n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad
                }

    trainer.add_callback(Snapshot())
    trainer.train()
    moved = {n for n in snapshots[10] if not torch.equal(snapshots[10][n], snapshots[20][n])}
    assert moved and all(n.startswith("encoder.") for n in moved), sorted(moved)[:5]

    with pytest.raises(ValueError, match="frozen_encoder_steps"):
        training_args(tmp_path, encoder_phase_towers=False, frozen_encoder_steps=0)


@pytest.mark.parametrize("on_copy", [True, False])
def test_item_vectors_come_from_the_unmasked_text_when_mlm_runs_on_a_copy(tiny_model_dir, on_copy):
    """``mlm_on_copy``: the fresh items' vectors are those of their unmasked text (as at evaluation), the MLM part
    comes from a masked copy; without it both come from one pass over the masked text."""
    from transformers import DataCollatorForLanguageModeling

    from recpipe.collators import FreshItemEncoder, tokenize_items

    model, tokenizer = rec_model(model_args(tiny_model_dir, peft_type="none"))
    model.eval()  # no dropout: the same text gives the same vector
    tokens = tokenize_items([item_text(i) for i in range(NUM_ITEMS)], tokenizer, 16)
    mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.5)
    batch = {}
    items = FreshItemEncoder(tokens, mlm, 8, mlm_on_copy=on_copy)(torch.arange(1, 9), batch)
    masked = batch["fresh_mlm_input_ids"] if on_copy else batch["fresh_input_ids"]
    assert (masked == tokenizer.mask_token_id).any()
    assert ("fresh_mlm_input_ids" in batch) == on_copy
    out = model(**batch)
    unmasked = model.encode_items(tokens, items - 1, autocast=False)
    assert torch.allclose(out["fresh_pooled"], unmasked, atol=1e-5) == on_copy
    assert out["mlm_loss"] is not None and out["mlm_loss"] > 0
