"""Speed benchmark, every figure measured side by side in one run (this machine is noisy and shared):

1. the machine's matmul peak (fp32 and bf16 GEMM, 2048²);
2. a fine-tuning step with the combined loss (rec + MLM + relation) against a rec-only step, same batches;
3. model FLOP/s of the training step as a fraction of the matmul peak;
4. catalogue encoding: recpipe (length-sorted dynamic padding, bf16 autocast) against sentence-transformers'
   ``encode`` on the same model and texts.

    python bench/speed.py                      # writes bench/results/speed.json (speed_gpu.json on a GPU)
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import datasets
import torch
from transformers import DataCollatorForLanguageModeling

from recpipe.backbone import resolve_model_path
from recpipe.collators import FreshItemEncoder, SequenceCollator, make_windows, tokenize_items
from recpipe.configs import ModelArguments, RecModelConfig, RecTrainingArguments
from recpipe.losses import CombinedLoss
from recpipe.modeling import build_model

ROOT = Path(__file__).resolve().parent.parent
# the same script on a GPU machine gives the GPU section (absolute times; results in speed_gpu.json)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def on_device(batch: dict) -> dict:
    return {k: v.to(DEVICE) if torch.is_tensor(v) else v for k, v in batch.items()}


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    if DEVICE.type == "cuda":
        n = max(n, 8192)  # a GPU needs a larger GEMM to reach its peak
    a, b = torch.randn(n, n, dtype=dtype, device=DEVICE), torch.randn(n, n, dtype=dtype, device=DEVICE)
    for _ in range(2):
        a @ b
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def encoder_flops_per_token(model) -> float:
    """Forward FLOPs per token of the encoder's transformer layers: 2 × (non-embedding weights) + attention."""
    backbone = model.encoder.get_base_model() if hasattr(model.encoder, "get_base_model") else model.encoder
    backbone = getattr(backbone, backbone.base_model_prefix)
    weights = sum(p.numel() for n, p in backbone.named_parameters() if "embeddings" not in n and p.dim() == 2)
    return 2.0 * weights


def step_timer(model, batches, loss_args, bf16: bool):
    loss_fn = CombinedLoss(loss_args)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step(batch) -> float:
        batch = on_device(batch)
        sync()
        start = time.perf_counter()
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = model(**batch)
            loss = loss_fn.total(loss_fn(model, outputs, batch))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        sync()
        return time.perf_counter() - start

    return step


def training_utilization(dd, texts, windows, bf16_peak: float) -> dict[str, dict]:
    """Step time and model FLOP/s of the combined-loss step under LoRA (with and without LoRA dropout) and full
    fine-tuning, same batches. Model FLOPs: 2× the encoder forward under LoRA (activation gradients only: the frozen
    weights need none), 3× under full fine-tuning."""
    configs = {
        "lora_dropout_0.05": ModelArguments(use_item_ids=True, lora_dropout=0.05),
        "lora_dropout_0": ModelArguments(use_item_ids=True, lora_dropout=0.0),
        "full_finetuning": ModelArguments(use_item_ids=True, peft_type="none"),
    }
    args = RecTrainingArguments(output_dir="/tmp/x", mlm_weight=0.1, rel_weight=0.1, use_cpu=True)
    out = {}
    for name, margs in configs.items():
        torch.manual_seed(1)
        model, tokenizer = build_model(RecModelConfig.from_arguments(margs, num_items=len(texts), max_history=50))
        model.to(DEVICE)
        tokens = tokenize_items(texts, tokenizer, margs.max_text_length)
        model.refresh_text_cache(tokens)
        model.train()
        mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
        collate = SequenceCollator(FreshItemEncoder(tokens, mlm, 64))
        batches = [collate([windows[i * 32 + j] for j in range(32)]) for i in range(8)]
        step = step_timer(model, batches, args, bf16=True)
        times = [step(b) for b in batches][2:]  # two warm-up steps
        fwd = encoder_flops_per_token(model) * statistics.mean(int(b["fresh_attention_mask"].sum()) for b in batches)
        factor = 3 if margs.peft_type == "none" else 2
        median = statistics.median(times)
        out[name] = {
            "step_s": median,
            "model_gflops": factor * fwd / median / 1e9,
            "flops_factor": factor,
            "fraction_of_bf16_peak": factor * fwd / median / 1e9 / bf16_peak,
        }
    return out


def main() -> None:
    torch.manual_seed(0)
    dd = datasets.load_from_disk(str(ROOT / "data" / "prepared" / "movielens-100k"))
    texts = list(dd["items"]["text"])
    peak = {"fp32_gflops": matmul_peak(torch.float32), "bf16_gflops": matmul_peak(torch.bfloat16)}
    print("matmul peak", peak, flush=True)

    margs = ModelArguments(use_item_ids=True)
    model, tokenizer = build_model(RecModelConfig.from_arguments(margs, num_items=len(texts), max_history=50))
    model.to(DEVICE)
    tokens = tokenize_items(texts, tokenizer, margs.max_text_length)
    model.refresh_text_cache(tokens)
    model.train()
    windows = make_windows(dd["train"], 50).shuffle(seed=0)
    mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    fresh = 64
    combined_args = RecTrainingArguments(output_dir="/tmp/x", mlm_weight=0.1, rel_weight=0.1, use_cpu=True)
    rec_args = RecTrainingArguments(output_dir="/tmp/x", mlm_weight=0.0, rel_weight=0.0, use_cpu=True)
    # the same fresh items in both: masking only changes the tokens and adds the MLM head on masked positions
    torch.manual_seed(1)
    combined_batches = [
        SequenceCollator(FreshItemEncoder(tokens, mlm, fresh))([windows[i * 32 + j] for j in range(32)])
        for i in range(12)
    ]
    rec_batches = []
    for b in combined_batches:
        r = {k: v for k, v in b.items() if k != "fresh_labels"}
        rows = b["fresh_items"] - 1
        r["fresh_input_ids"] = tokens["input_ids"][rows, : b["fresh_input_ids"].shape[1]]
        rec_batches.append(r)
    combined = step_timer(model, combined_batches, combined_args, bf16=True)
    rec_only = step_timer(model, rec_batches, rec_args, bf16=True)
    for k in range(2):  # warm-up
        combined(combined_batches[k]), rec_only(rec_batches[k])
    t_combined, t_rec = [], []
    for k in range(2, 12):  # alternate, side by side
        t_rec.append(rec_only(rec_batches[k]))
        t_combined.append(combined(combined_batches[k]))
    med_c, med_r = statistics.median(t_combined), statistics.median(t_rec)
    tokens_per_step = statistics.mean(int(b["fresh_attention_mask"].sum()) for b in combined_batches)
    # training ≈ 3 × forward (forward + backward for activations and the trained weights); LoRA skips most weight
    # gradients, so 3× overstates slightly: we also give the 2× (activation-gradient-only) figure.
    fwd = encoder_flops_per_token(model) * tokens_per_step
    flops = {"encoder_forward_gflop_per_step": fwd / 1e9, "tokens_per_step": tokens_per_step}
    train_speed = {
        "rec_only_step_s": med_r,
        "combined_step_s": med_c,
        "combined_over_rec_only": med_c / med_r,
        "model_tflops_3x": 3 * fwd / med_c / 1e12,
        "fraction_of_bf16_peak_3x": 3 * fwd / med_c / 1e9 / peak["bf16_gflops"],
        "fraction_of_bf16_peak_2x": 2 * fwd / med_c / 1e9 / peak["bf16_gflops"],
    }
    print("training", train_speed, flush=True)
    by_config = training_utilization(dd, texts, windows, peak["bf16_gflops"])
    print("training by configuration", by_config, flush=True)

    # catalogue encoding: recpipe against sentence-transformers, same model and texts, alternated
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model_path(margs.model_name_or_path), device=DEVICE.type)
    st.max_seq_length = margs.max_text_length
    st_bf16 = SentenceTransformer(
        resolve_model_path(margs.model_name_or_path), device=DEVICE.type, model_kwargs={"torch_dtype": torch.bfloat16}
    )
    st_bf16.max_seq_length = margs.max_text_length
    model.eval()
    # the same encoder without adapters: recpipe's pipeline overhead alone, against sentence-transformers
    plain, _ = build_model(
        RecModelConfig.from_arguments(
            ModelArguments(use_item_ids=True, peft_type="none"), num_items=len(texts), max_history=50
        )
    )
    plain.to(DEVICE)
    plain.eval()
    runs = {"recpipe_bf16": [], "recpipe_fp32": [], "recpipe_plain_bf16": [], "st_fp32": [], "st_bf16": []}
    for _ in range(3):
        for name in runs:
            sync()
            start = time.perf_counter()
            if name.startswith("recpipe"):
                target = plain if "plain" in name else model
                target.model_config.inference_dtype = "bfloat16" if name.endswith("bf16") else "float32"
                target.refresh_text_cache(tokens, 256)
            else:
                (st if name == "st_fp32" else st_bf16).encode(texts, batch_size=256)
            sync()
            runs[name].append(time.perf_counter() - start)
    encode = {f"{k}_items_per_s": len(texts) / min(v) for k, v in runs.items()}
    encode["recpipe_bf16_over_st_fp32"] = encode["recpipe_bf16_items_per_s"] / encode["st_fp32_items_per_s"]
    encode["recpipe_bf16_over_st_bf16"] = encode["recpipe_bf16_items_per_s"] / encode["st_bf16_items_per_s"]
    encode["recpipe_plain_bf16_over_st_bf16"] = (
        encode["recpipe_plain_bf16_items_per_s"] / encode["st_bf16_items_per_s"]
    )
    encode["recpipe_fp32_over_st_fp32"] = encode["recpipe_fp32_items_per_s"] / encode["st_fp32_items_per_s"]
    enc_flops = encoder_flops_per_token(model) * float(tokens["attention_mask"].sum())
    encode["recpipe_bf16_fraction_of_bf16_peak"] = enc_flops / min(runs["recpipe_bf16"]) / 1e9 / peak["bf16_gflops"]
    print("encoding", encode, flush=True)

    out = {
        "machine": (torch.cuda.get_device_name() if DEVICE.type == "cuda" else platform.machine())
        + f", {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": "all-MiniLM-L6-v2 (packaged) + LoRA r=8, ML-100K batches of 32 windows, 64 fresh items",
        "matmul_peak": peak,
        "flops": flops,
        "training": train_speed,
        "training_by_configuration": by_config,
        "catalogue_encoding": {"items": len(texts), **encode},
    }
    path = ROOT / "bench" / "results" / ("speed_gpu.json" if DEVICE.type == "cuda" else "speed.json")
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
