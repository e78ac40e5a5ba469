"""The retrieval model: an item tower (text encoder [+ LoRA] → pooled vector [+ ID embedding]) and a causal user
tower (SASRec-like) over the history's item vectors. Score = cosine / temperature (or dot product).

The encoder is loaded as ``AutoModelForMaskedLM`` so that the MLM loss comes from the same forward pass as the item
vectors: the backbone runs once on (masked) item text, the pooled states make the item vectors, and the MLM head
runs only on the masked positions (the full vocabulary projection on every token would cost as much as the
encoder itself).

Item vectors that need no gradient come from a cache of pooled encoder states (``text_cache``), refreshed on a
schedule; each training step re-encodes only the batch's "fresh" items with gradient and writes them over their
cached rows, so the softmax can still run over the whole catalogue.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from recpipe.backbone import load_masked_lm, masked_lm_loss, mlm_parts, pool
from recpipe.checkpointing import TrainableWeightsMixin, config_from_checkpoint
from recpipe.configs import RecModelConfig
from recpipe.console import quiet_model_loading
from recpipe.peft_utils import apply_peft
from recpipe.user_tower import UserTower

CONFIG_NAME = "recpipe_config.json"


def length_sorted_batches(attention_mask: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Row indices of tokenized texts in batches of similar length, longest first: each batch can then be cut to
    its own longest text (dynamic padding, bucketing by length)."""
    order = torch.argsort(attention_mask.sum(1), descending=True)
    return list(torch.split(order, batch_size))


@torch.no_grad()
def init_tower_weights(module: nn.Module, std: float = 0.02) -> None:
    """The one initialisation policy for every parameter recpipe's towers create, as Hugging Face models do in
    ``_init_weights``: weights N(0, std), biases 0, LayerNorm 1/0, padding rows 0.

    Mixed defaults are the trap this avoids: ``nn.Embedding`` starts at N(0, 1), so positions at N(0, 1) added to
    item vectors at N(0, 0.02) drown the items (~50x louder) and halved the ID-only model's NDCG@10.
    """
    if isinstance(module, nn.Linear):
        module.weight.normal_(0.0, std)
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.normal_(0.0, std)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.fill_(1.0)
        module.bias.zero_()
    elif isinstance(module, nn.MultiheadAttention):
        # the packed q/k/v projection is a bare parameter, not an nn.Linear (out_proj is one and is handled above)
        if module.in_proj_weight is not None:
            module.in_proj_weight.normal_(0.0, std)
        if module.in_proj_bias is not None:
            module.in_proj_bias.zero_()


class ItemRows:
    """Item vectors computed on lookup: ``rows[index]`` equals ``model.item_table(fresh_items, fresh_pooled)[index]``
    (the fresh items' rows carry gradient) without projecting the whole text cache or reading the whole ID table."""

    def __init__(self, model: RecModel, fresh_items: torch.Tensor | None, fresh_pooled: torch.Tensor | None):
        self.model = model
        self.fresh = None
        # one ID-dropout draw per step, as item_table makes, however many lookups the step does
        self.id_gate = model.step_id_gate() if model.id_embedding is not None else None
        if model.model_config.use_text and fresh_items is not None and fresh_items.numel():
            self.sorted_fresh, order = fresh_items.sort()
            self.fresh = fresh_pooled[order]

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        model, parts, text = self.model, [], None
        if model.model_config.use_text:
            text = model.text_cache[index]
            if self.fresh is not None:
                pos = torch.searchsorted(self.sorted_fresh, index).clamp(max=len(self.sorted_fresh) - 1)
                hit = self.sorted_fresh[pos] == index
                text = torch.where(hit[..., None], self.fresh[pos].to(text.dtype), text)
            parts.append(model.projection(text))
        if model.id_embedding is not None:
            parts.append(model.id_vectors(text, index, self.id_gate))
        return sum(parts)


class RecModel(TrainableWeightsMixin, nn.Module):
    """Item tower + user tower, rebuilt from a ``RecModelConfig`` (``num_items`` excludes the padding index 0)."""

    config_file = CONFIG_NAME

    def __init__(self, config: RecModelConfig, encoder: nn.Module | None = None):
        super().__init__()
        # not `config`: transformers' Trainer reads a model's `config` as a PretrainedConfig
        self.model_config, self.num_items, self.max_history = config, config.num_items, config.max_history
        dim = config.hidden_size
        self.encoder = encoder
        if config.use_text:
            if encoder is None:
                raise ValueError("use_text needs an encoder")
            text_dim = encoder.config.hidden_size
            self.projection = nn.Linear(text_dim, dim)
            # Pooled encoder states of every catalogue item (row 0: padding); refreshed by the trainer.
            self.register_buffer("text_cache", torch.zeros(config.num_items + 1, text_dim), persistent=False)
        self.id_embedding = nn.Embedding(config.num_items + 1, dim, padding_idx=0) if config.use_item_ids else None
        if self.id_embedding is not None:
            # 1 for items whose ID vector may train (set by ``restrict_ids_to``); the others score by text alone
            self.register_buffer("id_gate", torch.ones(config.num_items + 1), persistent=False)
        self.item_dropout = nn.Dropout(config.user_dropout)
        self.user_tower = UserTower(
            dim, config.max_history, config.user_layers, config.user_heads, config.user_dropout, config.user_ffn_size
        )
        self.init_weights()
        # the ID vector an item without one would have, predicted from its text (cold start); made after the other
        # weights are drawn, so that they start as they would without it
        self.id_from_text = None
        if config.use_text and config.id_from_text:
            self.id_from_text = nn.Linear(text_dim, dim)
            self.id_from_text.apply(lambda m: init_tower_weights(m, config.init_std))

    def init_weights(self) -> None:
        """Initialise every parameter the towers create by one policy (``init_tower_weights``); the pretrained
        encoder keeps its weights."""
        for name, child in self.named_children():
            if name != "encoder":
                child.apply(lambda m: init_tower_weights(m, self.model_config.init_std))

    @torch.no_grad()
    def restrict_ids_to(self, trained: torch.Tensor) -> None:
        """Give an ID vector only to the items of ``trained`` (a mask over the catalogue, row 0 padding): the rows
        of the others are zeroed and, gated off, never get a gradient, so an item never seen in training (cold
        start) is scored by its text vector alone instead of by a random, untrained ID vector."""
        if self.id_embedding is None:
            return
        gate = trained.to(self.id_gate.device, self.id_gate.dtype)
        self.id_gate.copy_(gate)
        self.id_embedding.weight.mul_(gate[:, None].to(self.id_embedding.weight.dtype))

    def step_id_gate(self) -> torch.Tensor:
        """The ID gate of one step: ``restrict_ids_to``'s, with each item's ID left out with probability
        ``id_dropout`` in training (no rescaling: at eval a warm item has its whole ID vector)."""
        gate = self.id_gate
        if self.training and self.model_config.id_dropout > 0:
            gate = gate * (torch.rand_like(gate) >= self.model_config.id_dropout)
        return gate

    def id_vectors(
        self, text: torch.Tensor | None = None, index: torch.Tensor | None = None, gate: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The ID part of the vectors of items ``index`` (every item when None), gated by ``gate`` (a fresh
        ``step_id_gate`` when None). With ``id_from_text`` an item left without one gets the ID vector predicted
        from its pooled ``text`` (the rows of ``index``)."""
        gate = self.step_id_gate() if gate is None else gate
        fill = 1.0 - gate
        fill[0] = 0.0  # padding stays zero
        weight = self.id_embedding.weight
        if index is not None:
            gate, fill, weight = gate[index], fill[index], self.id_embedding(index)
        ids = weight * gate[..., None].to(weight.dtype)
        if self.id_from_text is not None and text is not None:
            ids = ids + fill[..., None].to(weight.dtype) * self.id_from_text(text)
        return ids

    def text_only_vectors(self, pooled: torch.Tensor) -> torch.Tensor:
        """Item vectors of items known by their text alone (added after training): the projected text, plus the ID
        vector predicted from it under ``id_from_text``."""
        vectors = self.projection(pooled)
        return vectors + self.id_from_text(pooled) if self.id_from_text is not None else vectors

    @property
    def _no_split_modules(self) -> list[str]:
        """The encoder's layer classes (``BertLayer``, ...), read by accelerate's FSDP ``TRANSFORMER_BASED_WRAP`` to
        shard the encoder layer by layer; without them the whole model is one unit, gathered whole at every forward.
        From the Hugging Face model's own list, less the classes that hold the input embeddings (``BertEmbeddings``):
        the MLM head's decoder shares their weight, and FSDP cannot split tied weights across units."""
        encoder = self.encoder
        if encoder is None:
            return []
        base = encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder
        embeddings = base.get_input_embeddings()
        holders = {type(m).__name__ for m in base.modules() if any(c is embeddings for c in m.modules())}
        return [name for name in getattr(base, "_no_split_modules", None) or [] if name not in holders]

    @property
    def backbone(self) -> nn.Module | None:
        """The pretrained encoder (PEFT-wrapped or not); None for an ID-only model."""
        return self.encoder

    # ---- item tower ----
    def encode_text(self, input_ids, attention_mask, labels=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled text states, and the MLM loss over ``labels != -100`` when labels are given."""
        backbone, head = mlm_parts(self.encoder)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = pool(hidden, attention_mask, self.model_config.pooling)
        mlm_loss = None if labels is None else masked_lm_loss(self.encoder, head, hidden, labels)
        return pooled, mlm_loss

    def encode_items(self, tokenized: dict[str, torch.Tensor], rows: torch.Tensor, autocast: bool = True):
        """Pooled text states of the tokenized items ``rows`` (one batch): cut to the batch's longest text, on the
        model's device, under autocast to ``inference_dtype`` unless ``autocast=False`` (e.g. to take a gradient).
        Gradient and train/eval mode are the caller's; batches come from ``length_sorted_batches``."""
        mask = tokenized["attention_mask"][rows]
        width = int(mask.sum(1).max())
        device = self.text_cache.device
        ids = tokenized["input_ids"][rows, :width].to(device)
        use_bf16 = autocast and self.model_config.inference_dtype == "bfloat16"
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            pooled, _ = self.encode_text(ids, mask[:, :width].to(device))
        return pooled

    def item_table(
        self,
        fresh_items: torch.Tensor | None = None,
        fresh_pooled: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
    ):
        """Vectors of every catalogue item (row 0 is padding), with the fresh items' rows carrying gradient.
        ``text`` replaces the cached pooled text states (e.g. a copy that requires grad, for an attack)."""
        parts = []
        if self.model_config.use_text:
            text = self.text_cache if text is None else text
            if fresh_items is not None and fresh_items.numel():
                text = text.index_put((fresh_items,), fresh_pooled.to(text.dtype))
            parts.append(self.projection(text))
        if self.id_embedding is not None:
            parts.append(self.id_vectors(text))
        return sum(parts)

    def item_rows(self, fresh_items: torch.Tensor | None = None, fresh_pooled: torch.Tensor | None = None):
        """The item table as ``item_table`` gives it, computed only for the rows looked up (``rows[index]``): a
        step with sampled negatives then reads a few thousand rows, not the whole catalogue."""
        return ItemRows(self, fresh_items, fresh_pooled)

    @torch.no_grad()
    def refresh_text_cache(
        self, tokenized_items: dict[str, torch.Tensor], batch_size: int = 256, progress=False, accelerator=None
    ):
        """Re-encode the whole catalogue (no gradient, eval mode) into ``text_cache``.

        Under several processes each encodes every ``world``-th batch and the vectors are all-gathered. The batches
        are the same as in one process (same items, same padding), so every process ends with the same cache as a
        one-process run would.
        """
        if not self.model_config.use_text:
            return
        was_training = self.training
        self.eval()
        batches = length_sorted_batches(tokenized_items["attention_mask"], batch_size)
        world = accelerator.num_processes if accelerator is not None else 1
        rank = accelerator.process_index if world > 1 else 0
        device = self.text_cache.device
        rows_done, vectors = [], []
        for rows in tqdm(batches[rank::world], desc="encoding items", disable=not progress, leave=False):
            rows_done.append(rows.to(device))
            vectors.append(self.encode_items(tokenized_items, rows).to(self.text_cache.dtype))
        if world > 1:
            # equal shapes for the all-gather: pad each process's share to the largest share, mark padding with -1
            share = -(-len(batches) // world) * batch_size
            dim = self.text_cache.shape[1]
            rows_out = torch.full((share,), -1, dtype=torch.long, device=device)
            vecs_out = torch.zeros(share, dim, dtype=self.text_cache.dtype, device=device)
            if rows_done:
                done = torch.cat(rows_done)
                rows_out[: len(done)] = done
                vecs_out[: len(done)] = torch.cat(vectors)
            all_rows, all_vecs = accelerator.gather((rows_out, vecs_out))
            keep = all_rows >= 0
            self.text_cache[all_rows[keep] + 1] = all_vecs[keep]
        elif rows_done:
            self.text_cache[torch.cat(rows_done) + 1] = torch.cat(vectors)
        self.train(was_training)

    # ---- user tower and scores ----
    def user_states(self, table: torch.Tensor, input_items: torch.Tensor) -> torch.Tensor:
        mask = input_items > 0
        return self.user_tower(self.item_dropout(table[input_items]), mask)

    def scoring_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """User or item vectors made ready to score by inner product: normalised under cosine similarity."""
        return F.normalize(vectors, dim=-1) if self.model_config.similarity == "cos" else vectors

    def scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Similarity of user states ``[..., d]`` with item vectors ``[N, d]`` (before the temperature)."""
        return self.scoring_vectors(users) @ self.scoring_vectors(items).T

    def last_user_state(self, table: torch.Tensor, input_items: torch.Tensor) -> torch.Tensor:
        states = self.user_states(table, input_items)
        last = (input_items > 0).sum(1).clamp(min=1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]

    def forward(self, all_items: bool = True, **batch) -> dict[str, torch.Tensor | None]:
        """Representations for the losses: fresh pooled vectors, MLM loss, item table and user states.

        ``all_items=False`` (sampled or in-batch negatives) gives the item table as ``ItemRows``, whose rows are
        computed when looked up: no per-step work grows with the catalogue."""
        out: dict[str, torch.Tensor | None] = {"mlm_loss": None, "fresh_pooled": None}
        fresh = batch.get("fresh_items")
        if self.model_config.use_text and fresh is not None and fresh.numel():
            mask, labels = batch["fresh_attention_mask"], batch.get("fresh_labels")
            if "fresh_mlm_input_ids" in batch:  # vectors from the unmasked text, MLM from its masked copy
                out["fresh_pooled"], _ = self.encode_text(batch["fresh_input_ids"], mask)
                _, out["mlm_loss"] = self.encode_text(batch["fresh_mlm_input_ids"], mask, labels)
            else:
                out["fresh_pooled"], out["mlm_loss"] = self.encode_text(batch["fresh_input_ids"], mask, labels)
        if "input_items" in batch:
            table = (self.item_table if all_items else self.item_rows)(fresh, out["fresh_pooled"])
            out["item_table"] = table
            out["user_states"] = self.user_states(table, batch["input_items"])
        return out


def build_model(config: RecModelConfig, total_steps: int | None = None):
    """Build the model (encoder loaded through Auto classes, PEFT applied) and its tokenizer."""
    encoder = tokenizer = None
    if config.use_text:
        encoder, tokenizer = load_masked_lm(config)
        with quiet_model_loading():  # peft's deprecation warnings about transformers
            encoder = apply_peft(encoder, config, total_steps)
    return RecModel(config, encoder), tokenizer


def load_checkpoint(checkpoint_dir: str | os.PathLike) -> tuple[RecModel, object, dict]:
    """Rebuild a model from a recpipe checkpoint (base encoder + saved adapters/heads/towers), in eval mode.
    Returns (model, tokenizer, the checkpoint's config JSON)."""
    config, saved = config_from_checkpoint(checkpoint_dir, CONFIG_NAME, "recpipe", RecModelConfig)
    model, tokenizer = build_model(config)
    model.load_trainable_weights(checkpoint_dir)
    if model.id_embedding is not None:
        # an item never trained on kept an all-zero ID row (``restrict_ids_to``): the gate is read back from it
        model.restrict_ids_to(model.id_embedding.weight.detach().abs().sum(1) > 0)
    model.eval()
    return model, tokenizer, saved
