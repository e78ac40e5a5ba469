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
    weights is lost when they are freed at the end of the block. The layers stay gathered across their forwards in
    the block (no resharding after each), so processes that run different numbers of forwards there (each encodes
    its own share of the catalogue) make no collective calls that the others would wait for."""
    modules = fsdp_modules(model)
    if modules:
        # FSDP2 takes the first module whose forward runs for the root: an encoder layer run here before the
        # model's first forward would become one, and that forward would then fail. The outermost module is the root.
        modules[0]._get_fsdp_state()._lazy_init()
    saved = []
    for module in modules:
        state = module._get_fsdp_state()  # what set_reshard_after_forward changes, to be put back as it was
        groups = [(group, group.post_forward_mesh_info) for group in state._fsdp_param_groups]
        saved.append((state, state._auto_reshard_after_forward, groups))
        module.set_reshard_after_forward(False, recurse=False)
        module.unshard()
    try:
        yield model
    finally:
        for module in modules:
            module.reshard()
        for state, auto, groups in saved:
            state._auto_reshard_after_forward = auto
            for group, mesh_info in groups:
                group.post_forward_mesh_info = mesh_info


def copy_into(param: torch.Tensor, value: torch.Tensor) -> None:
    """``param.copy_(value)`` for a whole ``value``, also when ``param`` is a shard (each process keeps its part)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        value = distribute_tensor(value.to(param.device, param.dtype), param.device_mesh, param.placements)
    param.copy_(value)
