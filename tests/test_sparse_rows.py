"""``sparse_id_updates``: the ID embedding's gradient holds the rows a step looked up and only those rows move (lazy
AdamW), with torch's AdamW for every other parameter; gradient clipping and resuming work with it."""

import pytest
import torch
from helpers import make_trainer, model_args, training_args
from transformers import TrainerCallback

from recpipe.errors import InvalidInputError
from recpipe.sparse_rows import RowwiseAdamW, clip_grad_norm_


def train_embedding(sparse: bool, lookups, steps: int = 5, max_norm: float | None = 0.1, optimizer_state=None):
    """(embedding weight, linear weight, optimizer) after ``steps`` steps on ``lookups(step)`` rows."""
    torch.manual_seed(0)
    embedding, linear = torch.nn.Embedding(6, 3, sparse=sparse), torch.nn.Linear(3, 1)
    groups = [{"params": [embedding.weight], "weight_decay": 0.1}, {"params": linear.parameters(), "weight_decay": 0}]
    optimizer = (RowwiseAdamW if sparse else torch.optim.AdamW)(groups, lr=0.05)
    if optimizer_state is not None:
        embedding.weight.data, linear.weight.data, linear.bias.data = optimizer_state["weights"]
        optimizer.load_state_dict(optimizer_state["optimizer"])
    for step in range(steps):
        (linear(embedding(lookups(step))) ** 2).sum().backward()
        if max_norm is not None:
            params = [*embedding.parameters(), *linear.parameters()]
            norm = (clip_grad_norm_ if sparse else torch.nn.utils.clip_grad_norm_)(params, max_norm)
            assert norm > max_norm  # the clipping did something
        optimizer.step()
        optimizer.zero_grad()
    return embedding, linear, optimizer


def test_rowwise_adamw_is_adamw_when_every_row_is_looked_up():
    every_row = lambda step: torch.tensor([0, 1, 2, 3, 4, 5, 5, 2])  # noqa: E731  (rows 2 and 5 twice)
    dense, dense_linear, _ = train_embedding(False, every_row)
    sparse, sparse_linear, _ = train_embedding(True, every_row)
    assert torch.allclose(sparse.weight, dense.weight, atol=1e-7)
    assert torch.allclose(sparse_linear.weight, dense_linear.weight, atol=1e-7)


def test_rows_not_looked_up_keep_their_weights_and_moments_and_the_state_resumes():
    some_rows = lambda step: torch.tensor([[1, 2, 2], [4, 1, 1]][step % 2])  # noqa: E731
    torch.manual_seed(0)
    initial = torch.nn.Embedding(6, 3).weight.detach().clone()
    embedding, linear, optimizer = train_embedding(True, some_rows, steps=4)
    moved = (embedding.weight.detach() - initial).abs().sum(1) > 0
    assert moved.tolist() == [False, True, True, False, True, False]
    state = optimizer.state[embedding.weight]
    assert state["exp_avg"][[0, 3, 5]].abs().sum() == 0 and state["step"] == 4

    # 4 steps, then 2 more from the saved state = 6 steps in one go
    saved = {
        "weights": [embedding.weight.data.clone(), linear.weight.data.clone(), linear.bias.data.clone()],
        "optimizer": optimizer.state_dict(),
    }
    resumed, _, _ = train_embedding(True, lambda s: some_rows(s + 4), steps=2, optimizer_state=saved)
    whole, _, _ = train_embedding(True, some_rows, steps=6)
    assert torch.equal(resumed.weight, whole.weight)


def test_sparse_id_updates_needs_a_sampled_softmax_and_adamw(tmp_path):
    with pytest.raises(InvalidInputError, match="negatives sampled or in_batch"):
        training_args(tmp_path, sparse_id_updates=True, negatives="full")
    with pytest.raises(InvalidInputError, match="optim adamw_torch"):
        training_args(tmp_path, sparse_id_updates=True, negatives="sampled", optim="sgd")


class StepRows(TrainerCallback):
    """Per optimizer step: the ID rows in the gradient, and the rows whose weights the step changed."""

    def __init__(self, embedding):
        self.embedding, self.steps = embedding, []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grad = self.embedding.weight.grad
        assert grad.is_sparse
        self.looked_up = set(grad.coalesce().indices()[0].tolist())
        self.before = self.embedding.weight.detach().clone()

    def on_optimizer_step(self, args, state, control, **kwargs):
        changed = (self.embedding.weight.detach() - self.before).abs().sum(1) > 0
        self.steps.append((self.looked_up, set(changed.nonzero()[:, 0].tolist())))


def test_a_training_run_moves_only_the_rows_each_step_looked_up(tiny_model_dir, tmp_path):
    margs = model_args(tiny_model_dir, use_item_ids=True)
    options = dict(negatives="sampled", num_negatives=8, per_device_train_batch_size=2, max_steps=30)
    trainer, _, _ = make_trainer(
        tiny_model_dir, tmp_path, margs, sparse_id_updates=True, weight_decay=0.1, max_grad_norm=0.5, **options
    )
    rows = StepRows(trainer.model.id_embedding)
    trainer.add_callback(rows)
    trainer.train()

    assert isinstance(trainer.optimizer.optimizer, RowwiseAdamW)
    assert len(rows.steps) == 30
    for looked_up, changed in rows.steps:
        assert changed <= looked_up and len(changed) > 0
    assert sum(41 - len(looked_up) for looked_up, _ in rows.steps) > 0  # steps that left rows untouched
    history = [entry for entry in trainer.state.log_history if "rec_loss" in entry]
    assert all(0 < entry["grad_norm"] < float("inf") for entry in history)
    first, last = history[:5], history[-5:]
    assert sum(e["rec_loss"] for e in last) < sum(e["rec_loss"] for e in first)
