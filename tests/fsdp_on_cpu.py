"""Run a recipe under accelerate's FSDP on the CPU (used by tests/test_distributed.py):
``accelerate launch --config_file recpipe/accelerate_configs/fsdp.yaml tests/fsdp_on_cpu.py recipes/x.py ...``.

accelerate 1.15 chooses FSDP only for GPU-like devices: ``AcceleratorState.__init__`` sets ``DistributedType.FSDP``
in its branch for ``MULTI_GPU``, ``MULTI_NPU``, ... and not for ``MULTI_CPU``, so on the CPU an FSDP config silently
trains with DDP. torch's ``fully_shard`` itself runs on the CPU with gloo. This wrapper turns ``MULTI_CPU`` into
``FSDP`` when an FSDP plugin is configured (every time the shared state is re-read), and reports on stderr that the
model was sharded, then runs the recipe.
"""

import runpy
import sys

from accelerate import state as accelerate_state
from accelerate.utils import DistributedType, fsdp_utils

_init = accelerate_state.AcceleratorState.__init__
_fsdp2_prepare_model = fsdp_utils.fsdp2_prepare_model


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    plugin = fsdp_plugin if fsdp_plugin is not None else getattr(self, "fsdp_plugin", None)
    if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = plugin


def _fsdp2_prepare_model_and_report(accelerator, model):
    from torch.distributed.fsdp import FSDPModule

    model = _fsdp2_prepare_model(accelerator, model)
    sharded = sum(isinstance(module, FSDPModule) for module in model.modules())
    print(f"fsdp_on_cpu: {sharded} modules sharded by fully_shard", file=sys.stderr, flush=True)
    return model


accelerate_state.AcceleratorState.__init__ = _init_with_fsdp_on_cpu
fsdp_utils.fsdp2_prepare_model = _fsdp2_prepare_model_and_report
accelerator_module = sys.modules["accelerate.accelerator"]
accelerator_module.fsdp2_prepare_model = _fsdp2_prepare_model_and_report  # imported there by name
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
