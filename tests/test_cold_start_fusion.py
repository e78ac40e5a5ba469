"""Text–ID fusion for cold start: items never seen in training keep no ID vector (scored by text alone), and
``id_dropout`` trains the text path to rank items without their ID vector."""

import datasets
import pytest
import torch
from conftest import NUM_ITEMS, synthetic_prepared
from helpers import make_trainer, model_args, rec_model, training_args
from transformers import set_seed

from recpipe.configs import DataArguments, ModelArguments
from recpipe.errors import InvalidInputError
from recpipe.pipeline import train_stage

COLD = (39, 40)  # item indices that never occur in training


def without_cold_items():
    dd, stats = synthetic_prepared()
    train = dd["train"].to_dict()
    train["item_ids"] = [[i for i in seq if i not in COLD] for seq in train["item_ids"]]
    dd["train"] = datasets.Dataset.from_dict(train)
    return dd, stats


@pytest.mark.parametrize("id_dropout", [0.0, 0.5])
def test_a_cold_items_id_vector_is_never_trained(tiny_model_dir, tmp_path, id_dropout):
    dd, stats = without_cold_items()
    margs = model_args(tiny_model_dir, use_item_ids=True, id_dropout=id_dropout)
    # weight decay would move an untrained row that a zero gradient alone leaves in place
    args = training_args(tmp_path, max_steps=6, weight_decay=0.1, mlm_weight=0.0, rel_weight=0.0)
    data_args = DataArguments(max_history=10, prepared_dir=str(tmp_path / "unused"))
    set_seed(args.seed)  # as train_stage does: the same initial ID vectors as the model it trains
    start, _ = rec_model(margs, max_history=10)
    trainer, metrics = train_stage("finetune", data_args, margs, args, dd, stats)
    weight = trainer.model.id_embedding.weight.detach()
    assert torch.count_nonzero(weight[list(COLD)]) == 0, "a cold item kept or trained an ID vector"
    warm = [i for i in range(1, NUM_ITEMS + 1) if i not in COLD]
    assert not torch.equal(weight[warm], start.id_embedding.weight.detach()[warm]), "the warm ID vectors did not train"
    assert metrics["test_ndcg@10"] >= 0


def test_id_dropout_leaves_id_vectors_out_in_training_only(tiny_model_dir):
    model, _ = rec_model(model_args(tiny_model_dir, use_item_ids=True, id_dropout=0.5))
    trained = torch.ones(NUM_ITEMS + 1, dtype=torch.bool)
    trained[list(COLD)] = False
    model.restrict_ids_to(trained)
    weight = model.id_embedding.weight.detach()

    model.eval()
    assert torch.equal(model.id_vectors(), weight * trained[:, None])  # eval: every warm item, whole vector

    model.train()
    torch.manual_seed(0)
    kept = torch.stack([(model.id_vectors().detach() != 0).any(1) for _ in range(200)]).float()
    warm_rate = kept[:, 1:][:, trained[1:]].mean().item()
    assert warm_rate == pytest.approx(0.5, abs=0.05)
    assert kept[:, list(COLD)].sum() == 0
    dropped_or_whole = model.id_vectors().detach()
    assert all(torch.equal(row, weight[i]) or not row.any() for i, row in enumerate(dropped_or_whole))  # no rescale


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"id_dropout": 1.0, "use_item_ids": True}, "in \\[0, 1\\)"),
        ({"id_dropout": 0.3, "use_item_ids": False}, "hybrid"),
        ({"id_dropout": 0.3, "use_item_ids": True, "use_text": False}, "hybrid"),
    ],
)
def test_id_dropout_is_checked(kw, message):
    with pytest.raises(InvalidInputError, match=message):
        ModelArguments(**kw)


def test_id_from_text_fills_the_id_vector_of_items_without_one(tiny_model_dir, tmp_path):
    from recpipe.modeling import load_checkpoint

    model, _ = rec_model(model_args(tiny_model_dir, use_item_ids=True, id_dropout=0.5, id_from_text=True))
    model.text_cache.normal_()
    trained = torch.ones(NUM_ITEMS + 1, dtype=torch.bool)
    trained[[0, *COLD]] = False
    model.restrict_ids_to(trained)
    model.eval()
    table = model.item_table().detach()
    text = model.text_cache
    cold = list(COLD)
    expected_cold = model.projection(text[cold]) + model.id_from_text(text[cold])
    assert torch.allclose(table[cold], expected_cold.detach(), atol=1e-6)
    assert torch.allclose(table[cold], model.text_only_vectors(text[cold]).detach(), atol=1e-6)  # as added items
    warm = [1, 2, 3]
    expected_warm = model.projection(text[warm]) + model.id_embedding.weight[warm]
    assert torch.allclose(table[warm], expected_warm.detach(), atol=1e-6)
    assert torch.allclose(table[0], model.projection(text[:1])[0].detach(), atol=1e-6)  # padding: no predicted ID

    # in training the map learns from the warm items id_dropout leaves out
    model.train()
    model.item_table()[1 : NUM_ITEMS - 1].sum().backward()
    assert model.id_from_text.weight.grad.abs().sum() > 0

    # a checkpoint keeps the gate: the zero rows of items never trained on
    model.save_pretrained(tmp_path / "ckpt")
    loaded, _, _ = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(loaded.id_gate.bool(), trained)


def test_id_from_text_needs_something_to_learn_from(tiny_model_dir, tmp_path):
    margs = model_args(tiny_model_dir, use_item_ids=True, id_from_text=True)
    with pytest.raises(InvalidInputError, match="cold_weight > 0 or id_dropout"):
        make_trainer(tiny_model_dir, tmp_path, margs=margs, cold_weight=0.0)


@pytest.mark.parametrize("cold_loss_type", ["mse", "rank"])
def test_cold_loss_trains_only_the_text_to_id_map(tiny_model_dir, tmp_path, cold_loss_type):
    """cold_loss (regression or ranking) trains only ``id_from_text``: the warm model trains bit-identically with
    and without it."""
    dd, stats = without_cold_items()
    data_args = DataArguments(max_history=10, prepared_dir=str(tmp_path / "unused"))
    trained = {}
    for on in (False, True):
        margs = model_args(tiny_model_dir, use_item_ids=True, id_from_text=on)
        # a small clipping norm, so that every step clips: the map's gradient is clipped apart from the warm model's
        args = training_args(
            tmp_path / str(on),
            max_steps=5,
            mlm_weight=0.0,
            rel_weight=0.0,
            cold_weight=1.0,
            max_grad_norm=1e-3,
            cold_loss_type=cold_loss_type,
        )
        trainer, metrics = train_stage("finetune", data_args, margs, args, dd, stats)
        trained[on] = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        logs = [h for h in trainer.state.log_history if "rec_loss" in h]
        assert all(("cold_loss" in h) == on for h in logs)
    mapped = {n for n in trained[True] if n.startswith("id_from_text")}
    assert mapped and set(trained[True]) - mapped == set(trained[False])
    assert all(torch.equal(trained[True][n], trained[False][n]) for n in trained[False]), "the warm model changed"


def test_cold_ranking_loss_scores_a_share_of_warm_items_as_cold_and_trains_only_the_map(tiny_model_dir, tmp_path):
    from recpipe.losses import CombinedLoss

    model, _ = rec_model(model_args(tiny_model_dir, use_item_ids=True, id_from_text=True))
    model.text_cache.normal_()
    trained = torch.ones(NUM_ITEMS + 1, dtype=torch.bool)
    trained[[0, *COLD]] = False
    model.restrict_ids_to(trained)
    popularity = trained.long()
    targets = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    batch = {"input_items": torch.tensor([[5, 6, 7, 0], [1, 2, 3, 4]]), "target_items": targets}
    outputs = model(**batch)

    def ranking_loss(share):
        args = training_args(tmp_path, cold_loss_type="rank", cold_rank_share=share, mlm_weight=0.0)
        loss_fn = CombinedLoss(args, popularity)
        model.zero_grad()
        torch.manual_seed(0)
        loss = loss_fn.cold_start_loss(model, outputs, batch)
        loss.backward(retain_graph=True)
        return loss

    # share 1: every warm item is scored by projected text + predicted ID vector: the rec loss over that table
    all_cold = model.projection(model.text_cache) + model.id_from_text(model.text_cache)
    expected = CombinedLoss(training_args(tmp_path, mlm_weight=0.0), popularity).rec(
        model, outputs["user_states"], all_cold, targets, popularity
    )
    assert torch.allclose(ranking_loss(1.0), expected)
    graded = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert graded and all(n.startswith("id_from_text") for n in graded), graded
    # a share below 1 mixes predicted and trained vectors: neither table's loss
    mixed = ranking_loss(0.5)
    assert not torch.allclose(mixed, expected)
    assert not torch.allclose(
        mixed,
        CombinedLoss(training_args(tmp_path), popularity).rec(
            model, outputs["user_states"], outputs["item_table"], targets, popularity
        ),
    )


@pytest.mark.parametrize("share", [0.0, 1.5])
def test_cold_rank_share_is_checked(tmp_path, share):
    with pytest.raises(InvalidInputError, match="cold_rank_share"):
        training_args(tmp_path, cold_rank_share=share)
