"""``recpipe convert-gguf`` on a tiny random Llama written as a GGUF file here (Q4_1 matrices, Q8_0 embeddings, F32
norms and a byte-level BPE vocabulary: the layout of the packaged SmolLM2 file), so nothing is downloaded."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode

from recpipe import convert_gguf as cg
from recpipe.cli import main

gguf = pytest.importorskip("gguf")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ Y", "ĠY e", "ĠYe s", "Ġ N", "ĠN o", "Y e", "Ye s", "N o"]
HEADS, KV_HEADS = 4, 2


def _tokens() -> list[str]:
    merged = [m.replace(" ", "") for m in MERGES]
    return SPECIALS + list(bytes_to_unicode().values()) + merged


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's reordering of q/k rows (the GGUF loader undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path) -> LlamaForCausalLM:
    tokens = _tokens()
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name else 0.2 * torch.randn_like(p))

    Q = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name("tiny-llama")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(2)
    w.add_feed_forward_length(64)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(32 // HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)

    def add(name: str, t: torch.Tensor, qtype=Q.F32, permute_heads: int | None = None):
        a = t.detach().numpy().astype(np.float32)
        if permute_heads:
            a = _permute(a, permute_heads)
        if qtype == Q.F32:
            w.add_tensor(name, a)
        else:
            w.add_tensor(name, gguf.quants.quantize(a, qtype), raw_dtype=qtype)

    sd = model.state_dict()
    add("token_embd.weight", sd["model.embed_tokens.weight"], Q.Q8_0)
    add("output_norm.weight", sd["model.norm.weight"])
    for i in range(config.num_hidden_layers):
        pre = f"model.layers.{i}."
        add(f"blk.{i}.attn_norm.weight", sd[pre + "input_layernorm.weight"])
        add(f"blk.{i}.ffn_norm.weight", sd[pre + "post_attention_layernorm.weight"])
        add(f"blk.{i}.attn_q.weight", sd[pre + "self_attn.q_proj.weight"], Q.Q4_1, HEADS)
        add(f"blk.{i}.attn_k.weight", sd[pre + "self_attn.k_proj.weight"], Q.Q4_1, KV_HEADS)
        add(f"blk.{i}.attn_v.weight", sd[pre + "self_attn.v_proj.weight"], Q.Q4_1)
        add(f"blk.{i}.attn_output.weight", sd[pre + "self_attn.o_proj.weight"], Q.Q4_1)
        add(f"blk.{i}.ffn_gate.weight", sd[pre + "mlp.gate_proj.weight"], Q.Q4_1)
        add(f"blk.{i}.ffn_up.weight", sd[pre + "mlp.up_proj.weight"], Q.Q4_1)
        add(f"blk.{i}.ffn_down.weight", sd[pre + "mlp.down_proj.weight"], Q.Q4_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.Q4_1.gguf"
    original = write_tiny_gguf(path)
    return path, original


@pytest.fixture(scope="module")
def converted(tiny_gguf, tmp_path_factory):
    path, _ = tiny_gguf
    return cg.convert_gguf(path, tmp_path_factory.mktemp("converted") / "model")


def _load_gguf(path):
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()


def test_tiny_gguf_holds_the_model_it_was_written_from(tiny_gguf):
    """The fixture is right: names, q/k order and tying come back, up to the 4-bit rounding."""
    path, original = tiny_gguf
    loaded = _load_gguf(path)
    assert getattr(loaded.config, "quantization_config", None) is not None
    want, got = original.state_dict(), loaded.state_dict()
    assert set(want) == set(got)
    for name, w in want.items():
        if "norm" in name:
            torch.testing.assert_close(got[name], w, rtol=0, atol=1e-6)
        else:  # Q4_1: at most half a step of (block max - block min) / 15
            assert (got[name] - w).abs().max() <= 0.1 * w.abs().max(), name


def test_converted_folder_loads_plain_with_equal_logits(tiny_gguf, converted):
    path, _ = tiny_gguf
    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in json.loads((converted / "config.json").read_text())
    assert list(converted.glob("*.safetensors"))
    ids = torch.tensor([[1, 40, 90, 150, 200, 260, 7, 33]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, _load_gguf(path)(ids).logits, rtol=0, atol=1e-5)

    record = json.loads((converted / "conversion.json").read_text())
    assert record["sha256"] == cg.sha256_file(path) and record["dtype"] == "float32"
    assert record["parameters"] == sum(p.numel() for p in model.parameters())
    assert record["max_abs_logit_diff"] <= 1e-5


def test_converted_tokenizer_matches_gguf_tokenizer(tiny_gguf, converted):
    path, _ = tiny_gguf
    ours = AutoTokenizer.from_pretrained(converted)
    theirs = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in [" Yes", " No", "Yes", "No", "Hello world <|im_end|>"]:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"]
    assert len(ours(" Yes")["input_ids"]) == 1
    assert ours.eos_token == "<|im_end|>"


def test_converted_model_trains_and_saves(converted, tmp_path):
    from transformers import Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(converted)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(3, 200, (4, 12))
    data = [{"input_ids": x, "labels": x} for x in ids]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
    )
    Trainer(model=model, args=args, train_dataset=data).train()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)
    model.save_pretrained(tmp_path / "trained")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "trained")
    torch.testing.assert_close(reloaded.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_second_convert_is_skipped_unless_forced(tiny_gguf, converted):
    path, _ = tiny_gguf
    weights = next(converted.glob("*.safetensors"))
    stamp, record = weights.stat().st_mtime_ns, (converted / "conversion.json").read_text()
    assert cg.convert_gguf(path, converted) == converted
    assert weights.stat().st_mtime_ns == stamp and (converted / "conversion.json").read_text() == record
    cg.convert_gguf(path, converted, force=True)
    assert weights.stat().st_mtime_ns != stamp


def test_missing_file_and_missing_package_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        cg.convert_gguf(tmp_path / "absent.gguf", tmp_path / "out")
    monkeypatch.setitem(cg.PACKAGED_GGUF, "absent", cg.PackagedGguf("recpipe-no-such-package", "1.0", "x/y.gguf"))
    with pytest.raises(ImportError, match="pip install"):
        cg.packaged_gguf("absent")
    with pytest.raises(ValueError, match="unknown packaged GGUF"):
        cg.packaged_gguf("nope")


def test_resolve_causal_lm_converts_packaged_model_into_cache(tiny_gguf, tmp_path, monkeypatch):
    path, _ = tiny_gguf
    monkeypatch.setenv("RECPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cg, "packaged_gguf", lambda name="smollm2-135m-instruct": path)
    folder = cg.resolve_causal_lm(cg.PACKAGED_SMOLLM2)
    assert folder == str(tmp_path / "cache" / "models" / "tiny-llama.Q4_1")
    assert (tmp_path / "cache" / "models" / "tiny-llama.Q4_1" / "conversion.json").is_file()
    assert cg.resolve_causal_lm("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    with pytest.raises(ValueError, match="unknown packaged"):
        cg.resolve_causal_lm("packaged:nope")


def test_cli(tiny_gguf, tmp_path, capsys):
    path, _ = tiny_gguf
    assert main(["convert-gguf", "--gguf", str(path), "--output-dir", str(tmp_path / "m")]) == 0
    assert str(tmp_path / "m") in capsys.readouterr().out
    assert main(["convert-gguf", "--gguf", str(tmp_path / "absent.gguf")]) == 2
    assert "no GGUF file" in capsys.readouterr().err
