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


def test_every_family_cites_where_its_numbers_come_from():
    from tunewise.advise.lr import families

    for name, fam in families().items():
        assert fam["source"] and "arXiv:" in fam["cite"], name
        a = advise_lr("full", name, 10_000)
        assert fam["cite"] in a.en and "arXiv:2205.10287" in a.en  # the base rate's source and the sqrt rule's
        assert ("assumption" in a.en) != fam["published"], name  # an assumed base rate says what to do about it
    assert "LoRA Without Regret" in advise_lr("lora", "llama", 10_000).en


def test_advise_says_when_it_differs_from_the_figure_guides_quote():
    far = advise_lr("lora", "llama", 64 * 2048)  # a large batch of long answers: ~4e-4.. above the guides' 2e-4
    near = advise_lr("lora", "llama", 16 * 900)
    assert "Guides usually quote 0.0002 for lora" in far.en and "QLoRA" in far.en and "教程通常" in far.zh
    assert 0.5 <= near.value / 2e-4 <= 2 and "Guides usually quote" not in near.en
    small = advise_lr("full", "llama", 8 * 30)  # a few short answers per step: far below the 2e-5 of full-tuning guides
    assert "lower" in small.en and "Alpaca" in small.en
    unpublished = advise_lr("lora", "gemma3_text", 10_000)
    assert "if you have read another pretraining learning rate" in unpublished.en and "你看到过" in unpublished.zh
