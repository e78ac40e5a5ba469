"""Full-ranking evaluation shared by training, ``recpipe evaluate`` and the ``Recommender``: one code path, so the
numbers logged in training are the numbers a checkpoint gives later, and the ranking it serves.

Protocol: every user's target is ranked against the whole catalogue (padding excluded; the user's known items
excluded when ``exclude_history``); ties count against the model (pessimistic); the target is never in the input
(the prepared splits hold only the items before the target).
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader

from recpipe.collators import EvalCollator
from recpipe.metrics import full_ranking_metrics


def item_popularity(train, num_items: int) -> torch.Tensor:
    """Training interactions per item index (``[num_items + 1]``, padding 0 first): the popularity of sampled
    negatives, of the beyond-accuracy metrics and of the popularity baseline."""
    items = pc.list_flatten(train.with_format("arrow")[:]["item_ids"]).to_numpy()  # no Python loop over users
    return torch.from_numpy(np.bincount(items, minlength=num_items + 1).astype(np.int64))


@torch.no_grad()
def item_vectors(
    model, item_tokens: dict | None, batch_size: int = 256, refresh: bool = True, progress=False, accelerator=None
):
    """The catalogue's vectors as the model scores them (normalised under cosine similarity). With an
    ``accelerator`` of several processes, the catalogue encoding is split across them."""
    if refresh and model.model_config.use_text:
        model.refresh_text_cache(item_tokens, batch_size, progress=progress, accelerator=accelerator)
    return model.scoring_vectors(model.item_table())


@torch.no_grad()
def user_vectors(model, table: torch.Tensor, split, batch_size: int = 256, accelerator=None):
    """Last-position user states for every example of ``split`` (gathered once each across processes)."""
    was_training = model.training
    model.eval()
    split = split.add_column("row", list(range(len(split))))
    loader = DataLoader(split, batch_size=batch_size, collate_fn=EvalCollator(model.max_history))
    if accelerator is not None:
        loader = accelerator.prepare(loader)
    users, targets, rows = [], [], []
    device = table.device
    for batch in loader:
        state = model.scoring_vectors(model.last_user_state(table, batch["input_items"].to(device)))
        gathered = (state, batch["targets"].to(device), batch["row"].to(device))
        if accelerator is not None:
            gathered = accelerator.gather_for_metrics(gathered)
        users.append(gathered[0].float().cpu())
        targets.append(gathered[1].cpu())
        rows.append(gathered[2].cpu())
    model.train(was_training)
    return torch.cat(users), torch.cat(targets), torch.cat(rows)


def evaluate_split(
    model,
    split,
    item_tokens: dict | None,
    ks=(5, 10, 20),
    exclude_history: bool = True,
    batch_size: int = 256,
    prefix: str = "eval_",
    accelerator=None,
    refresh: bool = True,
    item_popularity: torch.Tensor | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on a prepared valid/test split."""
    table = item_vectors(model, item_tokens, batch_size, refresh=refresh, accelerator=accelerator)
    users, targets, rows = user_vectors(model, table, split, batch_size, accelerator)
    # every user exactly once: padding of the last distributed batch must have been dropped, nobody lost
    if not torch.equal(torch.sort(rows).values, torch.arange(len(split))):
        raise RuntimeError(f"evaluation gathered {len(rows)} rows for {len(split)} users (duplicates or gaps)")
    exclude = None
    if exclude_history:
        known = list(split["known_items"])
        exclude = [known[r] for r in rows.tolist()]
    return full_ranking_metrics(
        users, table.float().cpu(), targets, exclude=exclude, ks=ks, item_popularity=item_popularity, prefix=prefix
    )
