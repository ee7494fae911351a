"""Memory estimator: pure arithmetic over model facts, training shape and hardware passed in as data."""

from dataclasses import replace

from tunewise.hardware import GiB, cpu_only, with_gpus
from tunewise.train.memory import METHODS, MethodParams, Shape, estimate, fit_batch, trainable_params
from tunewise.models.facts import synthetic_facts

LLAMA_7B = synthetic_facts(layers=32, hidden=4096, intermediate=11008, heads=32, vocab=32000, tied=False)
SMALL = synthetic_facts(layers=4, hidden=256, intermediate=688, heads=4, vocab=32000, tied=False)
GPU24 = with_gpus(24)
BF16 = Shape(batch=1, seq=256, precision="bf16", weight_dtype="bfloat16")


def test_parameter_counts():
    assert abs(LLAMA_7B.params - 6.74e9) / 6.74e9 < 0.01  # Llama 2 7B has 6.74B parameters
    mp = MethodParams(lora_r=8)
    # r x (in + out) over the 7 linears of each of 32 layers
    per_layer = 8 * ((4096 + 4096) * 4 + (4096 + 11008) * 3)
    assert trainable_params(LLAMA_7B, "lora", mp) == 32 * per_layer
    assert trainable_params(LLAMA_7B, "lora", MethodParams(lora_r=8, target_modules=("q_proj", "v_proj"))) == 32 * 8 * 8192 * 2
    assert trainable_params(LLAMA_7B, "full", mp) == LLAMA_7B.params


def test_fake_24gb_gpu_7b_model():
    mp = MethodParams()
    full = estimate(LLAMA_7B, "full", mp, BF16, GPU24)
    lora = estimate(LLAMA_7B, "lora", mp, BF16, GPU24)
    qlora = estimate(LLAMA_7B, "qlora", mp, BF16, GPU24)
    assert full.device == "cuda" and not full.fits and full.total > 4 * 6.7e9 * 2  # weights+grads+2 Adam states, bf16
    assert lora.fits and 12.4 * GiB < lora.weights < 12.7 * GiB  # 6.74B x 2 bytes = 13.5e9 bytes
    assert qlora.fits and qlora.weights < lora.weights / 3  # 4-bit linears
    assert lora.optimizer == 2 * lora.trainable  # two fp32 moments per fp32 adapter weight


def test_activation_terms_respond_to_the_knobs():
    mp = MethodParams()
    base = estimate(SMALL, "lora", mp, Shape(batch=8, seq=256), cpu_only(64))
    assert estimate(SMALL, "lora", mp, Shape(batch=16, seq=256), cpu_only(64)).activations > 1.9 * base.activations
    gc = estimate(SMALL, "lora", mp, Shape(batch=8, seq=256, gradient_checkpointing=True), cpu_only(64))
    assert gc.activations < base.activations / 2
    eager = estimate(SMALL, "lora", mp, Shape(batch=8, seq=256, eager_attention=True), cpu_only(64))
    assert eager.activations > base.activations


def test_fast_loss_logits_are_chunked():
    mp = MethodParams()
    shape = Shape(batch=8, seq=1024, supervised_share=0.5, loss_chunk_size=256)
    fast = estimate(SMALL, "lora", mp, shape, cpu_only(64))
    assert fast.logits == 256 * 32000 * 4  # one fp32 chunk, turned into its gradient in place
    slow = estimate(SMALL, "lora", mp, replace(shape, fast_loss=False), cpu_only(64))
    assert slow.logits == 8 * 1024 * 32000 * 12
    # prefix/prompt go through peft's forward, which makes full logits even with fast_loss
    assert estimate(SMALL, "prompt", mp, shape, cpu_only(64)).logits > fast.logits


def test_nproc_shares_ram_on_cpu_and_fsdp_shards_on_gpus():
    mp = MethodParams()
    hw = cpu_only(16)
    one = estimate(SMALL, "full", mp, Shape(batch=4, seq=128), hw)
    two = estimate(SMALL, "full", mp, Shape(batch=4, seq=128, nproc=2), hw)
    assert two.budget == one.budget // 2 and two.gradients == 2 * one.gradients  # DDP buckets
    gpus = with_gpus(24, 4)
    ddp = estimate(LLAMA_7B, "full", mp, replace(BF16, nproc=4), gpus)
    fsdp = estimate(LLAMA_7B, "full", mp, replace(BF16, nproc=4, strategy="fsdp"), gpus)
    assert fsdp.weights == ddp.weights // 4 and fsdp.optimizer == ddp.optimizer // 4
    assert fsdp.total < ddp.total


def test_every_method_estimates_and_peft_is_cheaper_than_full():
    mp = MethodParams()
    est = {m: estimate(SMALL, m, mp, Shape(batch=4, seq=128), cpu_only(16)) for m in METHODS}
    assert all(e.total > 0 for e in est.values())
    for m in ("lora", "prefix", "prompt", "adapter", "freeze"):
        assert est[m].optimizer < est["full"].optimizer


def test_fit_batch_halves_then_turns_on_checkpointing():
    mp = MethodParams()
    roomy = fit_batch(LLAMA_7B, "lora", mp, replace(BF16, seq=2048), with_gpus(80), 16)
    tight = fit_batch(LLAMA_7B, "lora", mp, replace(BF16, seq=2048), GPU24, 16)
    assert roomy[0] > tight[0] or (tight[1] and not roomy[1])
    assert tight[2].fits
    assert fit_batch(LLAMA_7B, "full", mp, BF16, GPU24, 16) is None
