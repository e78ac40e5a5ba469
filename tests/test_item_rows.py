"""With sampled or in-batch negatives a training step computes only the item vectors it looks up: the same vectors
and gradients as the whole table, and no per-step work over the catalogue."""

import pytest
import torch
from conftest import NUM_ITEMS
from helpers import make_trainer, model_args, rec_model

from recpipe.losses import SoftmaxRecLoss


@pytest.mark.parametrize("cold_items", [False, True], ids=["all-ids", "gated-ids-from-text"])
def test_looked_up_rows_equal_the_whole_table_and_carry_the_fresh_gradient(tiny_model_dir, cold_items):
    options = {"id_from_text": True, "id_dropout": 0.5} if cold_items else {}
    model, _ = rec_model(model_args(tiny_model_dir, use_item_ids=True, **options))
    model.eval()  # the same ID-dropout draw is not shared by the two calls: compared without it
    torch.manual_seed(0)
    model.text_cache.copy_(torch.randn_like(model.text_cache))
    if cold_items:  # items 5 and 12 never seen in training: their ID vectors come from their text
        trained = torch.ones(model.num_items + 1)
        trained[[0, 5, 12]] = 0
        model.restrict_ids_to(trained)
    fresh = torch.tensor([7, 3, 12])
    pooled = torch.randn(3, model.text_cache.shape[1], requires_grad=True)
    index = torch.tensor([[3, 5, 0], [12, 7, 40]])

    whole = model.item_table(fresh, pooled)[index]
    (grad_whole,) = torch.autograd.grad(whole.square().sum(), pooled)
    rows = model.item_rows(fresh, pooled)[index]
    (grad_rows,) = torch.autograd.grad(rows.square().sum(), pooled)

    assert torch.allclose(rows, whole, atol=1e-6)
    assert torch.allclose(grad_rows, grad_whole, atol=1e-6) and grad_rows.abs().sum() > 0
    if cold_items:
        assert torch.allclose(rows[1, 0], model.text_only_vectors(pooled[2]), atol=1e-6)


def test_one_step_draws_one_id_dropout_mask_for_all_its_lookups(tiny_model_dir):
    model, _ = rec_model(model_args(tiny_model_dir, use_item_ids=True, id_dropout=0.5))
    model.train()
    torch.manual_seed(0)
    rows = model.item_rows()
    index = torch.arange(1, model.num_items + 1)
    first, second = rows[index], rows[index]
    assert torch.equal(first, second)  # an item dropped for its input position is dropped as a target too
    dropped = (first - model.projection(model.text_cache[index])).abs().sum(1) == 0
    assert 0 < dropped.sum() < len(index)


def test_sampled_negatives_follow_popularity_and_never_draw_padding_or_unseen_items():
    popularity = torch.tensor([0, 1, 0, 3, 6, 0, 10])
    loss = SoftmaxRecLoss(1.0, "sampled", num_negatives=200_000)
    torch.manual_seed(0)
    counts = torch.bincount(loss._draw(popularity), minlength=7).double()
    assert counts[0] == counts[2] == counts[5] == 0
    assert torch.allclose(counts / counts.sum(), popularity.double() / popularity.sum(), atol=0.005)


@pytest.mark.parametrize("negatives", ["sampled", "in_batch"])
def test_a_step_with_sampled_negatives_never_builds_the_whole_item_table(tiny_model_dir, tmp_path, negatives):
    trainer, _, _ = make_trainer(
        tiny_model_dir,
        tmp_path,
        margs=model_args(tiny_model_dir, use_item_ids=True),
        negatives=negatives,
        num_negatives=16,
        max_steps=2,
        item_cache_refresh_steps=100,
    )
    model = trainer.model
    model.refresh_text_cache(trainer.item_tokens)
    trainer._cache_step = 0  # the cache is fresh: only the training step itself is watched

    def whole_table(*args, **kwargs):
        raise AssertionError("a sampled-negatives step built the whole item table")

    model.item_table = whole_table
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.train()
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(before[n], p)]
    assert any("id_embedding" in n for n in moved) and any("lora" in n for n in moved)
    assert any("projection" in n for n in moved) and model.num_items == NUM_ITEMS
