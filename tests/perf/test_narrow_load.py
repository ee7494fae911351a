"""A bf16 checkpoint trained with LoRA on a CPU: its weight matrices stay in bf16 as stored (train.frozen_dtype: auto),
loaded without a float32 copy of the model, and training computes exactly what a float32 load computes."""

import shutil

import pytest
import torch


def _bf16_copy(src, out, hidden: int | None = None):
    """The tiny model at `src` saved as a bf16 checkpoint (as most Hub models are); `hidden` rebuilds it wider, with
    random weights (Gemma's embedding scale sqrt(hidden) is then not a bf16 number)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if hidden is None:
        model = AutoModelForCausalLM.from_pretrained(src)
    else:
        conf = AutoConfig.from_pretrained(src)
        conf.hidden_size = hidden
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(conf)
    model.to(torch.bfloat16).save_pretrained(out)
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, out / f.name)
    return out


ARCHS = [("tiny-llama", None), ("tiny-qwen2", None), ("tiny-gemma3", 80)]


def test_stored_dtype_reads_headers_only(tmp_path, tiny_model_dirs):
    from tunewise.models.load import stored_dtype

    assert stored_dtype(tiny_model_dirs["tiny-llama"]) == "float32"
    bf = _bf16_copy(tiny_model_dirs["tiny-llama"], tmp_path / "bf")
    assert stored_dtype(bf) == "bfloat16"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(bf).save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    assert stored_dtype(tmp_path / "sharded") == "bfloat16"
    assert stored_dtype(tmp_path / "nothing") is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"\x01")
    assert stored_dtype(tmp_path / "broken") is None


@pytest.mark.parametrize("arch,hidden", ARCHS)
def test_narrow_load_keeps_only_the_matrices_narrow(arch, hidden, tmp_path, tiny_model_dirs, demo_jsonl):
    from conftest import tiny_config
    from transformers import AutoModelForCausalLM

    from tunewise.config import load_config
    from tunewise.models.load import resolve_model
    from tunewise.train.assemble import load_for_training, loads_narrow, ready_for_training
    from tunewise.train.narrow import NarrowEmbedding, NarrowLinear

    bf = _bf16_copy(tiny_model_dirs[arch], tmp_path / "bf", hidden)
    cfg = load_config(None, base=tiny_config(tmp_path, demo_jsonl, model=str(bf)))
    resolved = resolve_model(str(bf))
    assert loads_narrow(cfg, resolved)
    for off in ({"train": {"frozen_dtype": "float32"}}, {"method": {"name": "full"}}, {"model": {"dtype": "float32"}}):
        c = tiny_config(tmp_path, demo_jsonl, model=str(bf))
        for k, v in off.items():
            c[k].update(v)
        assert not loads_narrow(load_config(None, base=c), resolved)

    model = load_for_training(cfg, resolved)
    wide = AutoModelForCausalLM.from_pretrained(bf, dtype=torch.float32)
    base = model.get_base_model()
    for name, t in wide.named_buffers():  # computed at build (rotary frequencies, Gemma's embedding scale): exact
        assert torch.equal(base.get_buffer(name), t), name
    if hidden:
        assert float(base.model.embed_tokens.embed_scale) != float(torch.tensor(hidden ** 0.5).bfloat16())
    ready_for_training(cfg, model, source=resolved.path)
    narrow = {id(m.weight) for m in model.modules() if isinstance(m, (NarrowLinear, NarrowEmbedding))}
    assert narrow
    for name, p in model.named_parameters():
        want = torch.bfloat16 if id(p) in narrow else torch.float32
        assert p.dtype == want, name
        if p.requires_grad:
            assert id(p) not in narrow
    for name, p in wide.named_parameters():  # the same values as a float32 load, matrices included
        assert torch.equal(base.get_parameter(name.replace("weight", "base_layer.weight")
                                              if "proj" in name else name).float(), p), name


@pytest.mark.parametrize("arch,hidden", ARCHS)
def test_a_narrow_load_computes_what_a_float32_load_computes(arch, hidden, tmp_path, tiny_model_dirs, demo_jsonl):
    """Same loss and gradients (the fused loss, the head in blocks, the trainable stop-token rows) from the same
    adapter. The adapter's random start itself is drawn by peft in the base's dtype, so a narrow load's is rounded
    to bf16, as on a GPU that loads its base in bf16: it is copied across here."""
    from conftest import tiny_config

    from tunewise.config import load_config
    from tunewise.train import narrow
    from tunewise.train.assemble import load_prepared
    from tunewise.train.collate import PadCollator
    from tunewise.train.trainer import supervised_loss

    bf = _bf16_copy(tiny_model_dirs[arch], tmp_path / "bf", hidden)
    models = {}
    for frozen in ("auto", "float32"):
        cfg = load_config(None, base=tiny_config(tmp_path, demo_jsonl, model=str(bf), train={"frozen_dtype": frozen}))
        torch.manual_seed(0)
        ds, models[frozen], pad = load_prepared(cfg)
    nar, wide = models["auto"], models["float32"]
    assert any(isinstance(m, narrow.NarrowLinear) for m in nar.modules())
    assert not any(isinstance(m, narrow.NarrowLinear) for m in wide.modules())
    trained = dict(nar.named_parameters())
    with torch.no_grad():
        for name, p in wide.named_parameters():
            if p.requires_grad:
                p.copy_(trained[name])
    batch = PadCollator(pad)([ds[i] for i in range(6)])
    batch = {k: batch[k] for k in ("input_ids", "labels", "attention_mask") if k in batch}
    losses = []
    for m in (nar, wide):
        torch.manual_seed(1)  # the same dropout masks
        loss = supervised_loss(m, batch, chunk_size=16)
        loss.backward()
        losses.append(float(loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    grads = [{k: p.grad for k, p in m.named_parameters() if p.grad is not None} for m in (nar, wide)]
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 4
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_a_bf16_checkpoint_trains_from_the_cli_with_its_matrices_narrow(tmp_path, tiny_model_dirs, demo_jsonl):
    from conftest import read_metrics, run_cli, tiny_config, write_config

    bf = _bf16_copy(tiny_model_dirs["tiny-qwen2"], tmp_path / "bf")
    losses, out = {}, {}
    for frozen in ("auto", "float32"):
        root = tmp_path / frozen
        root.mkdir()
        cfg = tiny_config(root, demo_jsonl, model=str(bf),
                          train={"frozen_dtype": frozen, "max_steps": 4, "logging_steps": 1, "eval_steps": 2})
        code, o, err = run_cli("train", str(write_config(root / "c.yaml", cfg)))
        assert code == 0, err
        out[frozen] = o + err
        losses[frozen] = [r[k] for r in read_metrics(root / "runs" / "t") for k in ("loss", "val_loss", "final_val_loss")
                          if k in r]
    assert "frozen weights kept in bfloat16 (auto: the checkpoint stores them in bfloat16" in out["auto"]
    assert "frozen weights kept" not in out["float32"]
    assert len(losses["auto"]) == 4 + 2 + 1
    assert losses["auto"] == pytest.approx(losses["float32"], rel=2e-3)  # only the adapter's start differs (above)


_FRAGMENT = """
import sys, torch
if sys.argv[1] == "checkpointing":
    from tunewise.train.assemble import returns_freed_memory
    assert returns_freed_memory()
def rss():
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("RssAnon")) // 1024
first = torch.ones(7_800_000)
del first  # a large tensor freed: glibc raises its mmap threshold to its size
base, keep = rss(), []
for layer in range(10):  # as checkpointed layers do: an activation freed, a small tensor made after it lives on
    big = torch.ones(6_000_000 + 150_000 * layer)
    keep.append(torch.ones(10_000))
    del big
print(rss() - base)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's malloc and /proc are Linux's")
def test_with_checkpointing_freed_activations_leave_the_resident_set(tmp_path):
    """glibc raises its mmap threshold after large frees, so freed 20 MB activations stay in the heap, pinned by
    the small tensors allocated between them (measured at Qwen2.5-1.5B: 8.6 GB peak against 4.1 GB)."""
    import subprocess
    import sys

    script = tmp_path / "fragment.py"
    script.write_text(_FRAGMENT)
    kept = {}
    for mode in ("plain", "checkpointing"):
        r = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        kept[mode] = int(r.stdout.split()[-1])
    assert kept["plain"] > 150  # MB: the heap kept what was freed (about 240)
    assert kept["checkpointing"] < 30


def test_checkpointing_runs_return_freed_memory_and_others_do_not(tmp_path, tiny_model_dirs, demo_jsonl, monkeypatch):
    from conftest import tiny_config

    from tunewise import compat
    from tunewise.config import load_config
    from tunewise.train.assemble import MMAP_THRESHOLD, load_prepared

    calls = []
    monkeypatch.setattr(compat, "malloc_mmap_threshold", lambda n: calls.append(n) or True)
    for gc in (False, True):
        load_prepared(load_config(None, base=tiny_config(tmp_path, demo_jsonl, train={"gradient_checkpointing": gc})))
        assert calls == ([MMAP_THRESHOLD] if gc else [])


@pytest.mark.parametrize("method", ["qlora", "prefix", "prompt", "adapter"])
def test_every_adapter_method_trains_on_a_bf16_checkpoint(method, tmp_path, tiny_model_dirs, demo_jsonl):
    """The other adapter methods load float32 and narrow afterwards (train.frozen_dtype: auto on a bf16 checkpoint)."""
    from conftest import run_cli, tiny_config, write_config

    bf = _bf16_copy(tiny_model_dirs["tiny-llama"], tmp_path / "bf")
    cfg = tiny_config(tmp_path, demo_jsonl, model=str(bf), method={"name": method}, train={"max_steps": 3, "eval_steps": 3})
    code, out, err = run_cli("train", str(write_config(tmp_path / "c.yaml", cfg)))
    assert code == 0, err[-2000:]
    assert "frozen weights kept in bfloat16 (auto: the checkpoint stores them in bfloat16" in out + err


def test_a_model_that_cannot_be_rebuilt_still_loads_narrow_with_its_buffers_widened(tmp_path, tiny_model_dirs,
                                                                                      demo_jsonl, monkeypatch, capsys):
    from conftest import tiny_config
    from transformers import AutoModelForCausalLM

    from tunewise.config import load_config
    from tunewise.models.load import resolve_model
    from tunewise.train.assemble import load_for_training, loads_narrow

    bf = _bf16_copy(tiny_model_dirs["tiny-gemma3"], tmp_path / "bf", 80)
    resolved = resolve_model(str(bf))
    remote = tiny_config(tmp_path, demo_jsonl, model=str(bf))
    remote["model"]["trust_remote_code"] = True
    assert not loads_narrow(load_config(None, base=remote), resolved)  # its buffers would run remote code again

    def refuse(*a, **k):
        raise ValueError("no such architecture")

    monkeypatch.setattr(AutoModelForCausalLM, "from_config", refuse)
    model = load_for_training(load_config(None, base=tiny_config(tmp_path, demo_jsonl, model=str(bf))), resolved)
    said = capsys.readouterr()
    assert "rebuilding them in float32 failed: ValueError" in said.out + said.err
    assert all(b.dtype == torch.float32 for b in model.buffers() if b.is_floating_point())
