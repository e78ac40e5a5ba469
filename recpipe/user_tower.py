"""The user tower: a causal transformer over a history's item vectors (SASRec-like). Its own module so that serving
can rebuild it from a checkpoint with torch alone, without the text encoder's libraries (``recpipe.recommender``)."""

from __future__ import annotations

import torch
from torch import nn


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
