"""bf16 mixed precision in training (train.precision; train/precision.py).

The fused loss calls the decoder itself, around the model's forward that accelerate wraps in autocast, so a
`bf16` run used to train in fp32 without saying so. These check that bf16 now reaches the matmuls (the loss
differs from fp32's in the last digits and stays within bf16's rounding of it), that the gradients agree, that
a frozen head's bf16 copy is made once, and what `auto` chooses on a CPU.
"""

import json

import pytest
import torch

from tunewise.templates import choose_template
from tunewise.templates.encode import encode_records
from tunewise.train import precision as prec
from tunewise.train import trainer as tr
from tunewise.train.collate import PadCollator


def _lora(path, seed=1):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
    torch.manual_seed(seed)
    return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gemma3"])
def test_bf16_loss_and_gradients_follow_fp32_within_rounding(arch, tiny_model_dirs):
    from transformers import AutoTokenizer

    from tunewise.samples.demo import demo_records

    tok = AutoTokenizer.from_pretrained(tiny_model_dirs[arch])
    model = _lora(tiny_model_dirs[arch])
    tpl = choose_template("auto", tok, model.config.model_type)
    enc, _ = encode_records(tok, tpl, demo_records()[:6], max_length=128)
    batch = PadCollator(tok.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in enc])

    def run(mixed):
        model.zero_grad()
        loss = tr.supervised_loss(model, batch, chunk_size=7, mixed=mixed)
        loss.backward()
        return float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    ref_loss, ref_g = run(None)
    tr._LOW_COPIES.clear()
    low_loss, low_g = run(torch.bfloat16)
    assert low_loss != ref_loss  # autocast reached the matmuls (equal would mean fp32 ran)
    assert low_loss == pytest.approx(ref_loss, rel=2e-2)
    cos = torch.nn.functional.cosine_similarity(ref_g, low_g, dim=0)
    assert cos > 0.98, float(cos)
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if weight is None or weight.requires_grad:  # a head with trainable rows: its frozen base layer's weight
        weight = head.token_adapter.base_layer.weight
    assert any(v[0]() is weight and v[3].dtype == torch.bfloat16 for v in tr._LOW_COPIES.values())


def test_low_copy_is_made_once_and_remade_after_the_weight_changes():
    w = torch.randn(32, 8)
    a = tr.low_copy(w, torch.bfloat16)
    assert a.dtype == torch.bfloat16 and tr.low_copy(w, torch.bfloat16) is a
    with torch.no_grad():
        w.mul_(2)
    b = tr.low_copy(w, torch.bfloat16)
    assert b is not a and torch.equal(b, (w * 1).bfloat16())
    narrow = torch.randn(4, 4).bfloat16()
    assert tr.low_copy(narrow, torch.bfloat16) is narrow  # already that dtype: no copy


def test_the_trainer_hands_its_bf16_flag_to_the_loss(tmp_path, demo_jsonl):
    """`train.precision: bf16` changes what compute_loss computes (it did not before: the fused loss bypassed
    accelerate's autocast)."""
    from conftest import tiny_config, write_config

    from tunewise.config import load_config
    from tunewise.train.assemble import build_trainer, load_prepared

    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train={"precision": "bf16"})))
    train_ds, model, pad_id = load_prepared(cfg)
    trainer, _ = build_trainer(cfg, model, train_ds, None, out=tmp_path / "out", pad_id=pad_id, report=False)
    assert trainer.args.bf16
    batch = trainer.data_collator([{"input_ids": e.input_ids, "labels": e.labels} for e in train_ds.examples[:4]])
    with torch.no_grad():
        mixed = float(trainer.compute_loss(model, batch))
        trainer.args.bf16 = False
        plain = float(trainer.compute_loss(model, batch))
    assert mixed != plain and mixed == pytest.approx(plain, rel=2e-2)


def test_auto_on_a_cpu_takes_bf16_only_where_it_is_measured_faster():
    class Conf:
        hidden_size, intermediate_size = 640, 2048

    class Model:
        config = Conf()

    asked = []

    def speed(x):
        def measure(k, n):
            asked.append((k, n))
            return x
        return measure

    fast = prec.resolve("auto", Model(), cuda=False, speedup=speed(4.4))
    assert fast.precision == "bf16" and "4.4x" in fast.why and asked == [(640, 2048)]
    slow = prec.resolve("auto", Model(), cuda=False, speedup=speed(1.3))
    assert slow.precision == "fp32" and "1.3x" in slow.why
    assert prec.resolve("auto", Model(), cuda=False, world=2, speedup=speed(4.4)).precision == "fp32"
    Conf.hidden_size = 64  # a tiny model: fp32 without measuring
    asked.clear()
    assert prec.resolve("auto", Model(), cuda=False, speedup=speed(9.0)).precision == "fp32" and not asked
    assert prec.resolve("bf16", Model(), cuda=False, speedup=speed(1.0)).precision == "bf16"  # as configured
    assert prec.resolve("auto", None, cuda=True, cuda_bf16=True).precision == "bf16"
    assert prec.resolve("auto", None, cuda=False).precision == "fp32"
    assert prec.flags(fast) == {"bf16": True, "fp16": False}


def test_tiny_models_keep_fp32_under_auto(tiny_model_dirs):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["tiny-llama"])
    assert prec.resolve("auto", model, cuda=False).precision == "fp32"


def test_speedup_measurement_returns_a_ratio():
    x = prec.measure_bf16_speedup(64, 128, rows=32)
    assert 0.01 < x < 100


def test_speedup_is_measured_once_per_cpu_threads_and_shape_then_kept(tmp_path, monkeypatch):
    """A CPU whose bf16 speed-up sits near the threshold must not train the same config in bf16 one run and fp32
    the next: the first measurement is kept in $TUNEWISE_HOME/precision.json and reused."""
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    calls = []
    ratios = iter([2.04, 1.96, 3.0])

    def measure(k, n, rows=512):
        calls.append((k, n, rows))
        return next(ratios)

    monkeypatch.setattr(prec, "measure_bf16_speedup", measure)
    prec.kept_speedup.cache_clear()
    try:
        assert prec.bf16_speedup(640, 2048) == 2.04
        prec.kept_speedup.cache_clear()  # a new process
        assert prec.bf16_speedup(640, 2048) == 2.04 and len(calls) == 1  # kept, not measured again (1.96 unused)
        assert prec.resolve("auto", shape=(640, 2048), cuda=False).precision == "bf16"
        kept = json.loads((tmp_path / "precision.json").read_text())
        assert list(kept.values()) == [2.04] and prec.cpu_signature() in next(iter(kept))
        torch.set_num_threads(2)  # another thread count is another measurement
        try:
            assert prec.bf16_speedup(640, 2048) == 1.96 and len(calls) == 2
        finally:
            torch.set_num_threads(1)
        (tmp_path / "precision.json").write_text("not json")  # a damaged file: measured again, rewritten
        prec.kept_speedup.cache_clear()
        assert prec.bf16_speedup(640, 2048) == 3.0 and len(json.loads((tmp_path / "precision.json").read_text())) == 1
    finally:
        prec.kept_speedup.cache_clear()


def test_a_narrow_frozen_weight_is_used_as_is_under_autocast(monkeypatch):
    """train.frozen_dtype bfloat16 with bf16 mixed precision: no widening to float32 and back (the same result as
    a float32 weight that autocast rounds to bf16)."""
    from tunewise.train import narrow

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    ref = torch.nn.Linear(64, 32)
    with torch.no_grad():
        ref.weight.copy_(lin.weight)
        ref.bias.copy_(lin.bias)
    for p in lin.parameters():
        p.requires_grad_(False)
    seq = torch.nn.Sequential(lin)
    narrow.narrow_frozen(seq, "bfloat16")
    assert type(seq[0]) is narrow.NarrowLinear and seq[0].weight.dtype == torch.bfloat16
    x = torch.randn(5, 64)
    wide_out = seq(x)  # outside autocast: widened, float32
    assert wide_out.dtype == torch.float32

    def refuse(*a):
        raise AssertionError("widened under autocast")

    monkeypatch.setattr(narrow._WideLinear, "apply", refuse)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = seq(x), ref(x)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)


def test_advise_resolves_auto_as_training_does_and_counts_the_head_copy(monkeypatch):
    from dataclasses import replace

    from tunewise.train import memory as mem
    from tunewise.hardware import cpu_only
    from tunewise.advise.largest import size_facts

    facts, cpu = size_facts("qwen2.5", "0.5B"), cpu_only(ram_gib=64)
    monkeypatch.setattr(prec, "bf16_speedup", lambda k, n: 4.0)
    assert mem.resolved_dtypes("auto", "auto", cpu, facts) == ("bf16", "float32")
    assert mem.resolved_dtypes("auto", "auto", cpu, facts, nproc=2)[0] == "fp32"
    monkeypatch.setattr(prec, "bf16_speedup", lambda k, n: 1.1)
    assert mem.resolved_dtypes("auto", "auto", cpu, facts) == ("fp32", "float32")
    mp, shape = mem.MethodParams(), mem.Shape(batch=4, seq=256, precision="bf16")
    wide = mem.estimate(facts, "lora", mp, shape, cpu)
    narrow = mem.estimate(facts, "lora", mp, replace(shape, frozen_dtype="bfloat16"), cpu)
    assert wide.logits - narrow.logits == facts.vocab * facts.hidden * 2  # the bf16 copy of a float32 head


@pytest.mark.parametrize("precision,method,narrow", [("bf16", "lora", True), ("fp32", "lora", False),
                                                     ("bf16", "full", False)])
def test_frozen_dtype_auto_narrows_the_base_of_a_bf16_adapter_run(tmp_path, demo_jsonl, precision, method, narrow):
    from conftest import tiny_config, write_config

    from tunewise.config import load_config
    from tunewise.train.assemble import load_prepared
    from tunewise.train.narrow import NarrowLinear

    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_config(
        tmp_path, demo_jsonl, method={"name": method}, train={"precision": precision})))
    assert cfg.train.frozen_dtype == "auto"
    _, model, _ = load_prepared(cfg)
    narrowed = [m for m in model.modules() if type(m) is NarrowLinear]
    assert bool(narrowed) is narrow
    assert all(m.weight.dtype == torch.bfloat16 for m in narrowed)


def test_the_generation_check_decodes_a_narrow_base_as_it_is(tiny_model_dirs, monkeypatch):
    """In a bf16 run the frozen base is narrow (frozen_dtype auto): the check decodes under autocast, the narrow
    weights going into each matmul as they are (never widened per step), giving the same tokens as float32 weights
    rounded to bf16 under autocast."""
    from transformers import AutoTokenizer

    from tunewise.models.generation import generate_ids
    from tunewise.samples.demo import demo_records
    from tunewise.train import behaviour, narrow

    path = tiny_model_dirs["tiny-gemma3"]
    tok = AutoTokenizer.from_pretrained(path)
    model, ref = _lora(path), _lora(path)
    with torch.no_grad():
        for p in ref.parameters():
            if not p.requires_grad and p.dim() == 2:
                p.copy_(p.bfloat16().float())
    narrow.narrow_frozen(model, "bfloat16")
    tpl = choose_template("auto", tok, model.config.model_type)
    recs = demo_records()
    probe = behaviour.build_probe(recs[:6], recs[6:40], tok, tpl, samples=4, max_new_tokens=12)
    monkeypatch.setattr(narrow._WideLinear, "apply", lambda *a: (_ for _ in ()).throw(AssertionError("widened")))
    got = behaviour.measure(model, probe, lambda ids: tok.decode(ids), batch_size=4)["_texts"]
    ref.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = generate_ids(ref, probe.prompts, stop_ids=probe.stop_ids, pad_id=probe.pad_id, max_new_tokens=12,
                            batch_size=4)
    assert got == [tok.decode(ids) for ids, _ in want]
