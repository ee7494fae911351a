"""Learning-rate rule: base LR x sqrt(supervised tokens per step / pretraining batch tokens), shown."""

import math

from tunewise.advise.lr import LORA_FACTOR, advise_lr, family_of


def test_full_finetuning_arithmetic_for_a_published_family():
    tokens = 16 * 512
    a = advise_lr("full", "llama", tokens)
    expect = 3e-4 * math.sqrt(tokens / 4194304)
    assert a.value == float(f"{expect:.2g}")
    assert "3e-04" in a.en or "0.0003" in a.en
    assert "sqrt(8,192 / 4,194,304)" in a.en
    assert "assumed" not in a.en


def test_lora_is_ten_times_full_and_clamped():
    big = advise_lr("lora", "llama", 64 * 2048)
    full = 3e-4 * math.sqrt(64 * 2048 / 4194304)
    assert abs(big.value - float(f"{full * LORA_FACTOR:.2g}")) < 1e-12
    small = advise_lr("lora", "llama", 16)  # a handful of supervised tokens: the rule gives a tiny LR
    assert small.value == 2e-4 and "kept inside" in small.en and "限制" in small.zh  # the measured floor


def test_unknown_family_and_virtual_token_methods_use_defaults():
    assert advise_lr("lora", "some_new_arch", 1000).value == 2e-4
    assert advise_lr("full", "some_new_arch", 1000).value == 1e-5
    assert advise_lr("prompt", "llama", 1000).value == 1e-3


def test_unpublished_recipes_say_so():
    a = advise_lr("lora", "gemma3_text", 10_000)
    assert "assumed" in a.en and "假设" in a.zh
    assert family_of("llama4_text") is family_of("llama")
