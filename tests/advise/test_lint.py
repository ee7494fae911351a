"""Lint rules: each a small named function over (config, facts), tested without a model."""

import pytest

from tunewise.advise import lint as L
from tunewise.advise.lint import Facts, lint
from tunewise.config.schema import Config


def cfg(**sections) -> Config:
    return Config.model_validate({k: v for k, v in sections.items()})


def codes(c, f=None):
    return {x.code for x in lint(c, f or Facts())}


def test_full_high_lr():
    assert L.full_high_lr(cfg(method={"name": "full"}, train={"learning_rate": 1e-4}), Facts())
    assert L.full_high_lr(cfg(method={"name": "full"}, train={"learning_rate": 2e-5}), Facts()) is None
    assert L.full_high_lr(cfg(method={"name": "lora"}, train={"learning_rate": 2e-4}), Facts()) is None


def test_lora_low_lr():
    assert L.lora_low_lr(cfg(train={"learning_rate": 1e-6}), Facts())
    assert L.lora_low_lr(cfg(train={"learning_rate": 1e-4}), Facts()) is None
    assert L.lora_low_lr(cfg(method={"name": "full"}, train={"learning_rate": 1e-6}), Facts()) is None


def test_lora_lr_between_1e6_and_1e4_is_explained_with_the_models_numbers():
    c = cfg(train={"learning_rate": 1e-5, "per_device_batch_size": 4, "gradient_accumulation_steps": 4})
    x = L.lora_lr_tradeoff(c, Facts(model_type="llama", mean_supervised=60.0, n_train=300))
    assert x and x.severity == "note" and "guides disagree" in x.en and "各教程说法不一" in x.zh
    from tunewise.advise.lr import advise_lr

    rule_lr = advise_lr("lora", "llama", 16 * 60.0)
    assert f"gives {rule_lr.value:g}" in x.en and "steps planned" in x.en and f"{rule_lr.value:g}" in x.fix_en
    assert "lora default gives 0.0002" in L.lora_lr_tradeoff(c, Facts()).en  # without the model: the method default
    for lr in (1e-6, 1e-4, 2e-4):
        assert L.lora_lr_tradeoff(cfg(train={"learning_rate": lr}), Facts()) is None
    assert L.lora_lr_tradeoff(cfg(method={"name": "full"}, train={"learning_rate": 1e-5}), Facts()) is None


def test_full_finetuning_on_small_data_points_to_lora():
    full = cfg(method={"name": "full"}, train={"learning_rate": 1e-5})
    x = L.full_small_data(full, Facts(train_text_bytes=2 * 2 ** 20))
    assert x and "2 MB" in x.en and "method.name: lora" in x.fix_en and "lora" in x.fix_zh
    assert L.full_small_data(full, Facts(train_text_bytes=20 * 2 ** 20)) is None
    assert L.full_small_data(cfg(), Facts(train_text_bytes=1000)) is None
    assert L.full_small_data(full, Facts()) is None  # size unknown: no guess


def test_many_epochs_small_data():
    c = cfg(train={"num_epochs": 10, "early_stopping": False})
    assert L.many_epochs_small_data(c, Facts(n_train=200, n_val=20))
    assert L.many_epochs_small_data(c, Facts(n_train=5000, n_val=20)) is None
    guarded = cfg(train={"num_epochs": 10, "early_stopping": True})
    assert L.many_epochs_small_data(guarded, Facts(n_train=200, n_val=20)) is None
    assert L.many_epochs_small_data(guarded, Facts(n_train=200, n_val=0))  # early stopping without validation does nothing
    steps = cfg(train={"num_epochs": 1, "max_steps": 500, "early_stopping": False})  # 500 steps x 8 / 200 = 20 epochs
    assert L.many_epochs_small_data(steps, Facts(n_train=200, n_val=0))


def test_no_validation():
    assert L.no_validation(cfg(data={"val_size": 0}), Facts())
    assert L.no_validation(cfg(), Facts()) is None
    assert L.no_validation(cfg(), Facts(n_val=0))  # a val_size that rounds to nothing on tiny data


def test_warmup_both():
    assert L.warmup_both(cfg(train={"warmup_steps": 10, "warmup_ratio": 0.1}), Facts())
    assert L.warmup_both(cfg(train={"warmup_steps": 10}), Facts()) is None  # default ratio left alone
    both = frozenset({"train.warmup_steps", "train.warmup_ratio"})
    assert L.warmup_both(cfg(train={"warmup_steps": 10, "warmup_ratio": 0.05}), Facts(explicit=both))
    assert L.warmup_both(cfg(train={"warmup_steps": 10, "warmup_ratio": 0.05}), Facts(explicit=frozenset({"train.warmup_steps"}))) is None


def test_truncation():
    assert L.truncation(cfg(), Facts(truncated_share=0.06))
    assert L.truncation(cfg(), Facts(truncated_share=0.05)) is None


def test_effective_batch_bounds_and_nproc():
    assert L.effective_batch_rule(cfg(train={"per_device_batch_size": 1, "gradient_accumulation_steps": 2}), Facts())
    assert L.effective_batch_rule(cfg(train={"per_device_batch_size": 1, "gradient_accumulation_steps": 2}), Facts(nproc=2)) is None
    big = cfg(train={"per_device_batch_size": 16, "gradient_accumulation_steps": 8})
    assert "larger than the training set" in L.effective_batch_rule(big, Facts(n_train=100)).en
    assert L.effective_batch_rule(big, Facts(n_train=1000)) is None


def test_stop_token_unlabelled_only_for_base_models():
    assert L.stop_token_unlabelled(cfg(), Facts(model_has_chat_template=False, stop_checked=10, stop_labelled=0, template_name="x"))
    assert L.stop_token_unlabelled(cfg(), Facts(model_has_chat_template=False, stop_checked=10, stop_labelled=10)) is None
    assert L.stop_token_unlabelled(cfg(), Facts(model_has_chat_template=True, stop_checked=10, stop_labelled=0)) is None


def test_lora_alpha_ratio():
    assert L.lora_alpha_ratio(cfg(method={"lora_r": 16, "lora_alpha": 4}), Facts())
    assert L.lora_alpha_ratio(cfg(method={"lora_r": 8, "lora_alpha": 64}), Facts())
    assert L.lora_alpha_ratio(cfg(method={"lora_r": 16, "lora_alpha": 32}), Facts()) is None
    assert L.lora_alpha_ratio(cfg(method={"lora_r": 16, "lora_alpha": 4, "use_rslora": True}), Facts()) is None


def test_template_differs():
    assert L.template_differs(cfg(), Facts(model_has_chat_template=True, template_matches_own=False, template_name="chatml"))
    assert L.template_differs(cfg(), Facts(model_has_chat_template=True, template_matches_own=True)) is None
    assert L.template_differs(cfg(), Facts(model_has_chat_template=False, template_name="chatml", family_template="gemma"))
    assert L.template_differs(cfg(), Facts(model_has_chat_template=False, template_name="gemma", family_template="gemma")) is None


def test_registry_runs_every_rule_and_messages_are_bilingual():
    c = cfg(method={"name": "full"}, data={"val_size": 0}, train={"learning_rate": 3e-4, "per_device_batch_size": 1,
                                                                  "gradient_accumulation_steps": 1, "num_epochs": 8})
    found = lint(c, Facts(n_train=100, n_val=0))
    assert {"full-high-lr", "no-validation", "effective-batch", "many-epochs-small-data"} <= {x.code for x in found}
    for x in found:
        d_en, d_zh = x.to_dict("en"), x.to_dict("zh")
        assert set(d_en) >= {"code", "message", "fix", "severity"} and d_en["message"] != d_zh["message"]
    assert codes(cfg()) == set()  # the defaults are clean


def test_stop_label_check_with_the_real_encoding(tiny_model_dirs):
    from tunewise.models.load import load_tokenizer
    from tunewise.templates import ChatTemplate

    tok = load_tokenizer(tiny_model_dirs["tiny-llama"])
    recs = [{"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "A helper."}]}] * 3
    good = ChatTemplate.from_registry("chatml", tok)
    assert L.stop_label_check(tok, good, recs, max_length=128) == (3, 3)
    # the same rendering, but the declared stop token is one the template never writes
    bad = ChatTemplate.from_registry("chatml", tok)
    bad.stop_strings = ["<|eot_id|>"]
    bad.stop_token_ids = [tok.convert_tokens_to_ids("<|eot_id|>")]
    assert L.stop_label_check(tok, bad, recs, max_length=128) == (3, 0)
    # truncated examples are not counted (the truncation rule covers them)
    assert L.stop_label_check(tok, good, recs, max_length=4)[0] == 0


@pytest.fixture
def tiny_cfg(tmp_path, demo_jsonl, tiny_model_dirs):
    from conftest import tiny_config, write_config

    def make(**sections):
        return write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, **sections))

    return make


def test_lint_cli_warns_and_strict_exits_2(tiny_cfg, capsys):
    from tunewise.cli import main

    path = tiny_cfg(train={"num_epochs": 8, "early_stopping": False}, method={"lora_alpha": 64})
    assert main(["lint", str(path)]) == 0
    out = capsys.readouterr().out
    assert "many-epochs-small-data" in out and "lora-alpha-ratio" in out
    assert main(["lint", str(path), "--strict"]) == 2
    said = capsys.readouterr()  # the findings, then the refusal naming the config
    assert "lora-alpha-ratio" in said.out and "Traceback" not in said.err
    assert f"{path}: " in said.err and "lint finding(s) with --strict" in said.err and "without --strict" in said.err
    assert main(["lint", str(path), "--lang", "zh"]) == 0
    assert "过拟合" in capsys.readouterr().out


def test_lint_explains_a_low_lora_lr_without_refusing_it(tiny_cfg, capsys):
    from tunewise.cli import main

    path = tiny_cfg(train={"learning_rate": 1e-5})
    assert main(["lint", str(path), "--strict"]) == 0  # a note explains a choice, it does not refuse it
    out = capsys.readouterr().out
    assert "note [lora-lr-tradeoff]" in out and "The LR rule for this model and batch gives" in out


def test_lint_finds_truncation_and_foreign_template_on_real_data(tiny_cfg, capsys):
    from tunewise.cli import main

    path = tiny_cfg(data={"max_length": 24}, template={"name": "gemma"})
    assert main(["lint", str(path), "--json"]) == 0
    import json

    found = {x["code"] for x in json.loads(capsys.readouterr().out)}
    assert {"truncation", "template-differs"} <= found
    assert main(["lint", str(tiny_cfg())]) == 0
    assert "no findings" in capsys.readouterr().out


def test_lint_before_training_uses_what_training_has(tiny_cfg):
    from tunewise.config import load_config
    from tunewise.data.prepare import prepare
    from tunewise.errors import ConfigError
    from tunewise.train.data import encode_for_training
    from tunewise.models.load import tokenizer_and_template

    cfg = load_config(tiny_cfg(method={"lora_alpha": 2}))
    _, tok, tpl = tokenizer_and_template(cfg)
    prepared = prepare(cfg, None)
    _, _, stats = encode_for_training(cfg, tok, tpl, prepared)
    said = []
    found = L.lint_before_training(cfg, tok, tpl, prepared, stats, model_type="llama", say=said.append)
    assert [x.code for x in found] == ["lora-alpha-ratio"] and "lora_alpha" in said[0]
    with pytest.raises(ConfigError, match=r"1 lint finding\(s\) in strict mode: lora-alpha-ratio"):
        L.lint_before_training(cfg, tok, tpl, prepared, stats, model_type="llama", strict=True, say=said.append)
