"""train.frozen_dtype: frozen weights kept in bf16 compute exactly what float32 weights rounded to bf16 compute."""

import numpy as np
import pytest
import torch

from tunewise.compat import file_mappings
from tunewise.templates import choose_template
from tunewise.templates.encode import encode_records
from tunewise.train import narrow
from tunewise.train.collate import PadCollator
from tunewise.train.trainer import supervised_loss


def _lora(path, seed=1):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
    torch.manual_seed(seed)  # the same (non-zero) adapter in every copy, so its gradients are not trivial
    return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-qwen2", "tiny-gemma3"])
def test_narrow_base_equals_rounded_float32_base(arch, tiny_model_dirs, monkeypatch):
    from transformers import AutoTokenizer

    from tunewise.samples.demo import demo_records

    monkeypatch.setattr(narrow, "BLOCK", 48)  # the vocabulary head is widened in several blocks
    tok = AutoTokenizer.from_pretrained(tiny_model_dirs[arch])
    ref, nar = _lora(tiny_model_dirs[arch]), _lora(tiny_model_dirs[arch])
    with torch.no_grad():  # the reference: the same frozen weights rounded to bf16 but stored as float32
        for p in ref.parameters():
            if not p.requires_grad and p.dim() == 2:
                p.copy_(p.bfloat16().float())
    saved = narrow.narrow_frozen(nar, "bfloat16")

    frozen = [p for p in nar.parameters() if not p.requires_grad and p.dim() == 2]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert all(p.dtype == torch.float32 for p in nar.parameters() if p.requires_grad)  # the adapter stays wide
    assert saved == sum(p.numel() for p in frozen) * 2  # tied head and embedding counted once
    assert type(nar.get_base_model().get_output_embeddings()) is narrow.NarrowLinear

    tpl = choose_template("auto", tok, ref.config.model_type)
    enc, _ = encode_records(tok, tpl, demo_records()[:4], max_length=96)
    batch = PadCollator(tok.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in enc])
    for model in (ref, nar):
        supervised_loss(model, batch, chunk_size=5).backward()  # the fused loss over a narrow head
    torch.testing.assert_close(_grads(nar), _grads(ref), rtol=1e-5, atol=1e-7)
    with torch.no_grad():  # the model's own forward (evaluation, generation): the head's logits in blocks
        a, b = ref(**batch).loss, nar(**batch).loss
    assert float(b) == pytest.approx(float(a), rel=1e-6)


def test_trainable_and_shared_weights_stay_wide():
    lin, emb = torch.nn.Linear(8, 8), torch.nn.Embedding(16, 8)
    model = torch.nn.ModuleDict({"lin": lin, "emb": emb, "head": torch.nn.Linear(8, 16, bias=False)})
    model["head"].weight = emb.weight  # tied
    odd = torch.nn.Module()
    odd.weight = emb.weight  # a module that could not compute with a narrow weight holds it too
    model["odd"] = odd
    emb.weight.requires_grad_(False)
    assert narrow.narrow_frozen(model) == 0
    assert lin.weight.dtype == emb.weight.dtype == torch.float32
    del model["odd"]
    assert narrow.narrow_frozen(model) == 16 * 8 * 2
    assert emb.weight.dtype == torch.bfloat16 and lin.weight.dtype == torch.float32  # trainable: untouched
    assert type(emb) is narrow.NarrowEmbedding and type(model["head"]) is narrow.NarrowLinear


def _rss_file_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status on this system")


def test_narrowing_a_mapped_checkpoint_releases_its_pages(tmp_path):
    # A memory-mapped .safetensors tensor, fully read (as narrowing reads it): 64 MiB of file pages resident.
    path = tmp_path / "w.safetensors"
    rng = np.random.default_rng(0)
    rng.standard_normal((4096, 4096), dtype=np.float32).tofile(path)
    arr = np.memmap(path, dtype=np.float32, mode="c", shape=(4096, 4096))  # private, as safetensors maps
    t = torch.from_numpy(np.asarray(arr))
    expected = torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(4096, 4096)).bfloat16()
    float(t.sum())
    before = _rss_file_mb()
    out = narrow._narrowed(t, torch.bfloat16, file_mappings())
    after = _rss_file_mb()
    assert before - after > 48  # the pages were handed back block by block
    assert torch.equal(out, expected)  # and the values were copied before that
    assert torch.equal(t[4000:4010].bfloat16(), expected[4000:4010])  # read again: the file is still there


def test_frozen_dtype_refused_for_full_weight_methods(tmp_path, demo_jsonl):
    from conftest import tiny_config

    from tunewise.config import load_config
    from tunewise.errors import ConfigError
    from tunewise.methods import check_config

    for method, ok in (("full", False), ("freeze", False), ("lora", True)):
        cfg = load_config(None, base=tiny_config(tmp_path, demo_jsonl, method={"name": method},
                                                 train={"frozen_dtype": "bfloat16"}))
        if ok:
            check_config(cfg)
        else:
            with pytest.raises(ConfigError, match=f"frozen_dtype=bfloat16 does not go with method '{method}'") as e:
                check_config(cfg)
            assert e.value.where == "train.frozen_dtype"


def test_training_with_a_narrow_base(tmp_path, tiny_model_dirs, demo_jsonl):
    from conftest import read_metrics, tiny_config, write_config

    from tunewise.cli import main
    from tunewise.methods import load_trained

    losses = {}
    for dtype in ("float32", "bfloat16"):
        root = tmp_path / dtype
        root.mkdir()
        cfg = tiny_config(root, demo_jsonl, train={"frozen_dtype": dtype, "max_steps": 4, "logging_steps": 1, "eval_steps": 2})
        assert main(["train", str(write_config(root / "c.yaml", cfg))]) == 0
        losses[dtype] = [r["loss"] for r in read_metrics(root / "runs" / "t") if "loss" in r]
    assert len(losses["bfloat16"]) == 4
    # Only the frozen weights' rounding differs: the same curve to a few parts in a thousand.
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=2e-3)
    model = load_trained(tmp_path / "bfloat16" / "runs" / "t")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the saved result loads on the exact base
