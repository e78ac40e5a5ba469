"""The user tower's backbone: one initialisation policy (the bug it prevents: positions at N(0, 1) drowning item
vectors at N(0, 0.02)), a tiny ID-only model that learns a next-item pattern, and the training windows."""

import datasets
import pytest
import torch
from conftest import NUM_ITEMS

from recpipe.collators import FreshItemEncoder, SequenceCollator, make_windows
from recpipe.configs import ModelArguments, RecModelConfig
from recpipe.ctr.config import CTRModelArguments
from recpipe.errors import InvalidInputError
from recpipe.losses import SoftmaxRecLoss
from recpipe.modeling import RecModel, build_model


def id_only_args(**kw) -> ModelArguments:
    base = dict(use_text=False, use_item_ids=True, peft_type="none", hidden_size=64, user_dropout=0.0)
    return ModelArguments(**{**base, **kw})


def id_only_model(num_items: int, max_history: int, **kw) -> RecModel:
    return RecModel(RecModelConfig.from_arguments(id_only_args(**kw), num_items=num_items, max_history=max_history))


@pytest.mark.parametrize("arguments", [ModelArguments, CTRModelArguments])
@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_encoder_dropout_out_of_range_is_refused_at_parsing(arguments, p):
    with pytest.raises(InvalidInputError, match="encoder_dropout must be in"):
        arguments(encoder_dropout=p)


def test_items_and_positions_enter_the_user_tower_at_comparable_scale():
    torch.manual_seed(0)
    model = id_only_model(500, 50)
    items = model.id_embedding.weight[1:]
    positions = model.user_tower.positions.weight
    ratio = positions.norm(dim=-1).mean() / items.norm(dim=-1).mean()
    assert 0.8 < ratio < 1.25, f"positions are {ratio:.1f}x the item vectors"
    assert torch.count_nonzero(model.id_embedding.weight[0]) == 0  # padding row


def test_every_tower_parameter_follows_the_init_policy(tiny_model_dir):
    from transformers import AutoModelForMaskedLM

    args = ModelArguments(
        model_name_or_path=tiny_model_dir, use_item_ids=True, peft_type="none", hidden_size=64, init_std=0.02
    )
    torch.manual_seed(0)
    model, _ = build_model(RecModelConfig.from_arguments(args, num_items=300, max_history=20))
    checked = 0
    for name, p in model.named_parameters():
        if name.startswith("encoder."):
            continue
        checked += 1
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        elif "norm" in name:
            assert torch.all(p == 1), name
        else:
            assert p.std().item() == pytest.approx(0.02, rel=0.25), name
    assert checked >= 15  # projection, ID embedding, positions, attention, feed-forward, norms
    # the pretrained encoder keeps its weights
    pretrained = AutoModelForMaskedLM.from_pretrained(tiny_model_dir).state_dict()
    for name, p in model.encoder.state_dict().items():
        assert torch.equal(p, pretrained[name]), name


def test_tiny_id_only_model_learns_a_next_item_pattern():
    """Each item has one fixed successor (a random permutation); after 200 steps at the recipe's learning rate the
    model must name it. (With positions at N(0, 1) the same run names 5% of them.)"""
    torch.manual_seed(0)
    n, length = 60, 20
    successor = torch.randperm(n) + 1  # successor[i - 1] follows item i

    def sequences(count):
        seqs = torch.zeros(count, length, dtype=torch.long)
        seqs[:, 0] = torch.randint(1, n + 1, (count,))
        for t in range(1, length):
            seqs[:, t] = successor[seqs[:, t - 1] - 1]
        return seqs

    model = id_only_model(n, length, hidden_size=32, user_layers=1)
    loss_fn = SoftmaxRecLoss(temperature=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(200):
        seqs = sequences(32)
        out = model(input_items=seqs[:, :-1])
        loss = loss_fn(model, out["user_states"], out["item_table"], seqs[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        seqs = sequences(200)
        scores = model.scores(model.last_user_state(model.item_table(), seqs[:, :-1]), model.item_table())
        scores[:, 0] = float("-inf")
        recall_at_1 = (scores.argmax(1) == seqs[:, -1]).float().mean().item()
    assert recall_at_1 > 0.95


def windows_of(seqs, max_history, stride):
    train = datasets.Dataset.from_dict({"user_id": [f"u{k}" for k in range(len(seqs))], "item_ids": seqs})
    return make_windows(train, max_history, stride)


@pytest.mark.parametrize("stride", [1, 3, 10])
def test_every_target_is_trained_once_with_the_most_history(stride):
    max_history = 10
    seqs = [list(range(1, n + 1)) for n in (2, 7, 11, 12, 25, 40)]  # item k sits at position k - 1
    windows = windows_of(seqs, max_history, stride)
    batch = SequenceCollator(FreshItemEncoder(None, None, 0))(list(windows))
    trained = []
    for inputs, targets in zip(batch["input_items"], batch["target_items"]):
        for t in torch.nonzero(targets).flatten().tolist():
            history = int((inputs[: t + 1] > 0).sum())
            target = int(targets[t])
            trained.append(target)
            # the target sees its whole past, or the last max_history items of it when it is longer
            assert history == min(target - 1, max_history) or history > max_history - stride
            if stride == 1:
                assert history == min(target - 1, max_history)
    # every item after the first of each sequence exactly once
    expected = sorted(k for s in seqs for k in s[1:])
    assert sorted(trained) == expected


def test_default_stride_is_non_overlapping_windows():
    seqs = [list(range(1, 26))]
    windows = list(windows_of(seqs, 10, None))
    assert [w["items"] for w in windows] == [list(range(15, 26)), list(range(5, 16)), list(range(1, 6))]
    assert all(w["first_target"] == 0 for w in windows)
    with pytest.raises(ValueError, match="stride"):
        windows_of(seqs, 10, 11)


def test_id_only_has_num_items_rows():
    model = id_only_model(NUM_ITEMS, 10)
    assert model.item_table().shape == (NUM_ITEMS + 1, 64)


@pytest.mark.parametrize("encoder_dropout, matches_cache", [(None, False), (0.0, True)])
def test_encoder_dropout_zero_makes_fresh_vectors_match_the_cache(tiny_model_dir, encoder_dropout, matches_cache):
    """Phase 2 re-encodes a batch's fresh items in train mode and scores them among cached (eval-mode) vectors: with
    the encoder's own dropout the fresh items stand out from the rest; with ``encoder_dropout: 0`` they do not."""
    from conftest import item_text

    from recpipe.collators import tokenize_items

    args = ModelArguments(
        model_name_or_path=tiny_model_dir,
        use_item_ids=False,
        peft_type="lora",
        encoder_dropout=encoder_dropout,
        inference_dtype="float32",  # the cache in the dtype the fresh vectors are computed in
    )
    torch.manual_seed(0)
    model, tokenizer = build_model(RecModelConfig.from_arguments(args, num_items=NUM_ITEMS, max_history=10))
    tokens = tokenize_items([item_text(i) for i in range(1, NUM_ITEMS + 1)], tokenizer, 16)  # row i: item i + 1
    model.refresh_text_cache(tokens)
    model.train()
    fresh = model.encode_items(tokens, torch.arange(NUM_ITEMS), autocast=False)
    close = torch.allclose(fresh, model.text_cache[1:].to(fresh.dtype), atol=1e-5)
    assert close == matches_cache
    # the setting is part of the model's config: a checkpoint rebuilds the same encoder
    dropouts = {m.p for n, m in model.encoder.named_modules() if isinstance(m, torch.nn.Dropout) and "lora" not in n}
    assert dropouts == ({0.0} if encoder_dropout == 0.0 else {0.1})
