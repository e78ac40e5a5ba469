"""Does a cold item lose to warm ones only by the scale of its predicted ID vector? (issue 15, cold-start split)

Loads a trained ``text+id-frozen-coldmap`` run (``bench/quality.py --cold``), and scores the warm test split and the
cold test split twice: with the ID vectors ``id_from_text`` predicts for cold items as trained, and with them scaled
so that their mean norm matches the mean norm of the trained ID vectors (a rule with no free parameter: chosen
before looking at any figure, and evaluated once). Writes ``bench/results/cold/<dataset>/calibration.json``.

    python bench/cold_calibration.py bench/runs/cold/movielens-100k/text+id-frozen-coldmap/seed0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from recpipe.checkpointing import last_complete_checkpoint
from recpipe.data.prepare import load_prepared
from recpipe.evaluation import evaluate_split
from recpipe.modeling import load_checkpoint

RESULTS = Path(__file__).parent / "results" / "cold"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="output folder of a cold-split run trained with id_from_text")
    args = parser.parse_args()
    model, _, saved = load_checkpoint(args.run)  # the selected (best-on-valid) weights
    checkpoint = Path(last_complete_checkpoint(args.run))  # the text cache: the encoder is frozen, so any one
    if model.id_from_text is None or not model.model_config.freeze_encoder:
        raise SystemExit(f"{args.run}: not a frozen-encoder run trained with id_from_text")
    cache = load_file(checkpoint / "text_cache.safetensors")["text_cache"]
    model.text_cache.copy_(cache.to(model.text_cache.dtype))
    dd, stats = load_prepared(saved["prepared_dir_absolute"])
    warm = model.id_gate > 0
    with torch.no_grad():
        trained_norm = model.id_embedding.weight[warm].norm(dim=1).mean().item()
        predicted_norm = model.id_from_text(model.text_cache[warm]).norm(dim=1).mean().item()
    scale = trained_norm / predicted_norm
    predict = model.id_from_text.forward
    result = {"run": str(args.run), "text_cache_from": checkpoint.name, "trained_id_norm": trained_norm}
    result["predicted_id_norm"] = predicted_norm
    for name, factor in [("as_trained", 1.0), ("norm_matched", scale)]:
        model.id_from_text.forward = lambda x, factor=factor: factor * predict(x)
        for split in ("test", "test_cold"):
            metrics = evaluate_split(model, dd[split], None, refresh=False, prefix=f"{split}_")
            result[f"{name}_{split}_ndcg@10"] = metrics[f"{split}_ndcg@10"]
            result[f"{name}_{split}_recall@10"] = metrics[f"{split}_recall@10"]
    result["scale"] = scale
    out = RESULTS / saved["data_args"]["dataset"] / "calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
