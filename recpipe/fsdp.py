"""What FSDP2 (``fully_shard``, accelerate's ``fsdp_version: 2``) asks of code that uses a model's weights outside its
forward pass.

Under FSDP2 each process holds a shard of every parameter (a ``DTensor``); a module's forward hook gathers its whole
weights and frees them after. recpipe also uses the weights outside the model's forward: it encodes the catalogue
into the item-vector cache, evaluates, and loads saved weights. These helpers make those work on sharded models and
do nothing on others. Each one is a collective: every process must call it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def fsdp_modules(model: nn.Module) -> list[nn.Module]:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return []
    return [module for module in model.modules() if isinstance(module, FSDPModule)]


@contextmanager
def gathered_parameters(model: nn.Module):
    """Every parameter whole (not a shard) inside the block, for read-only use: what is written to the gathered
    weights is lost when they are freed at the end of the block."""
    modules = fsdp_modules(model)
    for module in modules:
        module.unshard()
    try:
        yield model
    finally:
        for module in modules:
            module.reshard()


def copy_into(param: torch.Tensor, value: torch.Tensor) -> None:
    """``param.copy_(value)`` for a whole ``value``, also when ``param`` is a shard (each process keeps its part)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        value = distribute_tensor(value.to(param.device, param.dtype), param.device_mesh, param.placements)
    param.copy_(value)
