"""Adversarial training (FGM/PGD on the input word embeddings): the perturbation never touches a weight, a step moves
the weights exactly as the optimizer alone would from the gradient, adv_loss is logged and summed, and the
perturbation is an ascent direction of the rec loss."""

import pytest
import torch
from helpers import make_trainer, model_args
from transformers import TrainerCallback

from recpipe.robustness.adversarial import EmbeddingPerturbation, adversarial_delta, input_embeddings


def first_batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_adv_loss_is_logged_and_part_of_the_loss(tiny_model_dir, tmp_path, method):
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, adversarial=method, adv_epsilon=0.3, max_steps=3)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rec_loss" in h]
    assert len(logs) == 3
    for h in logs:
        assert h["adv_loss"] > 0
        # parts are logged unweighted; the weights are the run's arguments (adv_loss: adv_weight · rec_weight)
        a = trainer.args
        parts = h["rec_loss"] + a.mlm_weight * h["mlm_loss"] + a.rel_weight * h["rel_loss"]
        assert h["loss"] == pytest.approx(parts + a.adv_weight * h["adv_loss"], rel=1e-4)


class StepWatcher(TrainerCallback):
    """Weights at the start of the step, and the gradients the optimizer is about to apply."""

    def __init__(self, model):
        self.model, self.before, self.at_optimizer, self.grads = model, None, None, None

    def on_step_begin(self, args, state, control, **kwargs):
        self.before = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.at_optimizer = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("peft_type", ["lora", "none"])
def test_a_step_moves_weights_only_as_the_optimizer_would(tiny_model_dir, tmp_path, peft_type):
    """Plain SGD, one step: after the adversarial forwards and backward no weight has moved (the perturbation was
    never written into a weight, nothing is left to restore), and after the step w' = w - lr·grad exactly."""
    margs = model_args(tiny_model_dir, peft_type=peft_type)
    trainer, *_ = make_trainer(
        tiny_model_dir, tmp_path, margs=margs, adversarial="pgd", adv_epsilon=0.3, optim="sgd", max_steps=1
    )
    watcher = StepWatcher(trainer.model)
    trainer.add_callback(watcher)
    trainer.train()
    lr = trainer.args.learning_rate  # linear schedule, no warmup: the first step uses the full rate
    for n, p in trainer.model.named_parameters():
        assert torch.equal(watcher.at_optimizer[n], watcher.before[n]), f"{n} moved before the optimizer step"
        expected = watcher.before[n] - lr * watcher.grads[n] if n in watcher.grads else watcher.before[n]
        assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-6), n
    assert input_embeddings(trainer.model.encoder).weight.requires_grad == (peft_type == "none")
    assert any(n.startswith("encoder.") for n in watcher.grads)


def test_adversarial_step_changes_the_gradient(tiny_model_dir, tmp_path):
    """The adversarial part really reaches the weights' gradients (same batch and seed, with and without it)."""

    def grads(adversarial):
        trainer, *_ = make_trainer(tiny_model_dir, tmp_path, adversarial=adversarial, adv_epsilon=0.3)
        for module in trainer.model.modules():  # no dropout: the two runs differ only by the adversarial part
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        trainer.compute_loss(trainer.model.train(), first_batch(trainer)).backward()
        return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}

    clean, adversarial = grads("none"), grads("fgm")
    assert clean.keys() == adversarial.keys()
    assert any(not torch.allclose(clean[n], adversarial[n]) for n in clean)


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_the_perturbation_raises_the_rec_loss_and_stays_in_the_ball(tiny_model_dir, tmp_path, method):
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, adversarial=method, adv_epsilon=0.2, adv_alpha=0.1)
    model = trainer.model.eval()  # deterministic: no dropout
    batch = first_batch(trainer)
    model.refresh_text_cache(trainer.item_tokens)
    perturbation = trainer._perturbation
    with perturbation.probe():
        out = model(**batch)
    clean = trainer.loss_fn(model, out, batch)["rec_loss"]

    def rec_loss_at(delta):
        with perturbation.apply(delta):
            return trainer.loss_fn(model, model(**batch), batch)["rec_loss"]

    delta = adversarial_delta(rec_loss_at, clean, perturbation.delta, perturbation.token_norms, method, 0.2, 0.1, 3)
    radius = 0.2 * perturbation.token_norms
    assert (delta.norm(dim=-1, keepdim=True) <= radius * (1 + 1e-5) + 1e-7).all()
    assert rec_loss_at(delta).item() > clean.item()
    # outside probe/apply the hook is inert: a clean forward gives the clean loss again
    again = trainer.loss_fn(model, model(**batch), batch)["rec_loss"]
    assert torch.equal(again, clean.detach())


def test_hook_is_inert_outside_its_contexts_and_removable():
    embeddings = torch.nn.Embedding(10, 4)
    ids = torch.tensor([[1, 2, 3]])
    plain = embeddings(ids)
    perturbation = EmbeddingPerturbation(embeddings)
    assert torch.equal(embeddings(ids), plain)
    with perturbation.apply(torch.ones(1, 3, 4)):
        assert torch.allclose(embeddings(ids), plain + 1)
    with perturbation.probe():
        probed = embeddings(ids)
    assert torch.equal(probed, plain) and perturbation.delta.requires_grad
    perturbation.remove()
    with perturbation.apply(torch.ones(1, 3, 4)):
        assert torch.equal(embeddings(ids), plain)


def test_adversarial_training_needs_a_trained_encoder(tiny_model_dir, tmp_path):
    margs = model_args(tiny_model_dir, freeze_encoder=True)
    with pytest.raises(ValueError, match="trained encoder"):
        make_trainer(tiny_model_dir, tmp_path, margs=margs, adversarial="fgm")
