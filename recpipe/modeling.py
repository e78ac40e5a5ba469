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

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer

from recpipe.checkpointing import TrainableWeightsMixin
from recpipe.configs import ModelArguments, resolve_model_path

CONFIG_NAME = "recpipe_config.json"


def _mlm_parts(mlm_model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """Split an ``AutoModelForMaskedLM`` (possibly inside a PEFT wrapper) into its backbone and its MLM head."""
    inner = mlm_model.get_base_model() if hasattr(mlm_model, "get_base_model") else mlm_model
    backbone = getattr(inner, inner.base_model_prefix)
    for name in ("cls", "lm_head", "predictions"):  # BERT, RoBERTa/XLM-R, ALBERT
        if hasattr(inner, name):
            return backbone, getattr(inner, name)
    return backbone, None


def masked_lm_loss(encoder: nn.Module, head: nn.Module | None, hidden: torch.Tensor, labels: torch.Tensor):
    """MLM cross-entropy with the head run only on the masked positions (``labels != -100``): the vocabulary
    projection on every token would cost as much as the encoder itself."""
    if head is None:
        raise ValueError(f"{type(encoder).__name__} has no MLM head; set mlm_weight: 0")
    selected = labels != -100
    if not selected.any():
        return hidden.sum() * 0.0
    return F.cross_entropy(head(hidden[selected]).float(), labels[selected])


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


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


class UserTower(nn.Module):
    """Causal transformer over item vectors; the state at position t summarises the history up to item t.

    Sequences are right-padded, so every query position has at least position 0 to attend to (left padding with a
    causal mask leaves padded rows with nothing to attend to, and NaN).
    """

    def __init__(self, dim: int, max_len: int, layers: int, heads: int, dropout: float, ffn_size: int | None = None):
        super().__init__()
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=ffn_size or 2 * dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, item_vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = item_vectors.shape[1]
        if length > self.positions.num_embeddings:
            raise ValueError(f"history of {length} items is longer than max_history={self.positions.num_embeddings}")
        pos = torch.arange(length, device=item_vectors.device)
        x = self.dropout(item_vectors + self.positions(pos))
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=1)
        x = self.encoder(x, mask=causal, src_key_padding_mask=~mask, is_causal=True)
        return self.norm(x)


class RecModel(TrainableWeightsMixin, nn.Module):
    """Item tower + user tower. ``num_items`` excludes the padding index 0."""

    def __init__(self, args: ModelArguments, num_items: int, max_history: int, encoder: nn.Module | None = None):
        super().__init__()
        self.args, self.num_items, self.max_history = args, num_items, max_history
        dim = args.hidden_size
        self.encoder = encoder
        if args.use_text:
            if encoder is None:
                raise ValueError("use_text needs an encoder")
            text_dim = encoder.config.hidden_size
            self.projection = nn.Linear(text_dim, dim)
            # Pooled encoder states of every catalogue item (row 0: padding); refreshed by the trainer.
            self.register_buffer("text_cache", torch.zeros(num_items + 1, text_dim), persistent=False)
        self.id_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0) if args.use_item_ids else None
        self.item_dropout = nn.Dropout(args.user_dropout)
        self.user_tower = UserTower(
            dim, max_history, args.user_layers, args.user_heads, args.user_dropout, args.user_ffn_size
        )
        self.init_weights()

    def init_weights(self) -> None:
        """Initialise every parameter the towers create by one policy (``init_tower_weights``); the pretrained
        encoder keeps its weights."""
        for name, child in self.named_children():
            if name != "encoder":
                child.apply(lambda m: init_tower_weights(m, self.args.init_std))

    # ---- item tower ----
    def encode_text(self, input_ids, attention_mask, labels=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled text states, and the MLM loss over ``labels != -100`` when labels are given."""
        backbone, head = _mlm_parts(self.encoder)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = hidden[:, 0] if self.args.pooling == "cls" else mean_pool(hidden, attention_mask)
        mlm_loss = None if labels is None else masked_lm_loss(self.encoder, head, hidden, labels)
        return pooled, mlm_loss

    def item_table(
        self,
        fresh_items: torch.Tensor | None = None,
        fresh_pooled: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
    ):
        """Vectors of every catalogue item (row 0 is padding), with the fresh items' rows carrying gradient.
        ``text`` replaces the cached pooled text states (e.g. a copy that requires grad, for an attack)."""
        parts = []
        if self.args.use_text:
            text = self.text_cache if text is None else text
            if fresh_items is not None and fresh_items.numel():
                text = text.index_put((fresh_items,), fresh_pooled.to(text.dtype))
            parts.append(self.projection(text))
        if self.id_embedding is not None:
            parts.append(self.id_embedding.weight)
        return sum(parts)

    @torch.no_grad()
    def refresh_text_cache(
        self, tokenized_items: dict[str, torch.Tensor], batch_size: int = 256, progress=False, accelerator=None
    ):
        """Re-encode the whole catalogue (no gradient, eval mode) into ``text_cache``.

        Under several processes each encodes every ``world``-th batch and the vectors are all-gathered. The batches
        are the same as in one process (same items, same padding), so every process ends with the same cache as a
        one-process run would.
        """
        if not self.args.use_text:
            return
        was_training = self.training
        self.eval()
        ids, mask = tokenized_items["input_ids"], tokenized_items["attention_mask"]
        device = self.text_cache.device
        # Sorting by length lets each batch be cut to its own longest text (dynamic padding, bucketing by length).
        order = torch.argsort(mask.sum(1), descending=True)
        batches = list(torch.split(order, batch_size))
        world = accelerator.num_processes if accelerator is not None else 1
        rank = accelerator.process_index if world > 1 else 0
        mine = batches[rank::world]
        use_bf16 = self.args.inference_dtype == "bfloat16"
        rows_done, vectors = [], []
        for rows in tqdm(mine, desc="encoding items", disable=not progress, leave=False):
            width = int(mask[rows].sum(1).max())
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                pooled, _ = self.encode_text(ids[rows, :width].to(device), mask[rows, :width].to(device))
            rows_done.append(rows.to(device))
            vectors.append(pooled.to(self.text_cache.dtype))
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

    def scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Similarity of user states ``[..., d]`` with item vectors ``[N, d]`` (before the temperature)."""
        if self.args.similarity == "cos":
            users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        return users @ items.T

    def last_user_state(self, table: torch.Tensor, input_items: torch.Tensor) -> torch.Tensor:
        states = self.user_states(table, input_items)
        last = (input_items > 0).sum(1).clamp(min=1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]

    def forward(self, **batch) -> dict[str, torch.Tensor | None]:
        """Representations for the losses: fresh pooled vectors, MLM loss, item table and user states."""
        out: dict[str, torch.Tensor | None] = {"mlm_loss": None, "fresh_pooled": None}
        fresh = batch.get("fresh_items")
        if self.args.use_text and fresh is not None and fresh.numel():
            out["fresh_pooled"], out["mlm_loss"] = self.encode_text(
                batch["fresh_input_ids"], batch["fresh_attention_mask"], batch.get("fresh_labels")
            )
        if "input_items" in batch:
            table = self.item_table(fresh, out["fresh_pooled"])
            out["item_table"] = table
            out["user_states"] = self.user_states(table, batch["input_items"])
        return out

    # ---- checkpoints: trainable weights + config as safetensors ----
    def save_pretrained(self, output_dir: str | os.PathLike, extra_config: dict | None = None) -> None:
        """Save what training changed (adapters, heads, towers; the whole encoder under full fine-tuning)."""
        config = {
            "model_args": asdict(self.args),
            "num_items": self.num_items,
            "max_history": self.max_history,
            **(extra_config or {}),
        }
        self.save_trainable(output_dir, CONFIG_NAME, config)


def build_model(args: ModelArguments, num_items: int, max_history: int, total_steps: int | None = None):
    """Build the model (encoder loaded through Auto classes, PEFT applied) and its tokenizer."""
    from recpipe.peft_utils import apply_peft

    encoder = tokenizer = None
    if args.use_text:
        path = resolve_model_path(args.model_name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=args.trust_remote_code)
        encoder = AutoModelForMaskedLM.from_pretrained(path, trust_remote_code=args.trust_remote_code)
        encoder = apply_peft(encoder, args, total_steps)
    return RecModel(args, num_items, max_history, encoder), tokenizer


def load_checkpoint(checkpoint_dir: str | os.PathLike) -> tuple[RecModel, object, dict]:
    """Rebuild a model from a recpipe checkpoint: base encoder + saved adapters/heads. Returns (model, tokenizer,
    config)."""
    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{checkpoint_dir} is not a recpipe checkpoint (no {CONFIG_NAME})")
    config = json.loads((checkpoint_dir / CONFIG_NAME).read_text())
    args = ModelArguments(**config["model_args"])
    model, tokenizer = build_model(args, config["num_items"], config["max_history"])
    model.load_trainable_weights(checkpoint_dir)
    model.eval()
    return model, tokenizer, config
