"""`tunewise explain`: every schema key is explained in English and Chinese, from the schema's descriptions."""

import json

import pytest

from tunewise.advise.explain import explain_json, find_key, format_key, format_overview, knowledge, schema_keys, type_info
from tunewise.cli import main
from tunewise.errors import ConfigError


def _numeric(k) -> bool:
    t = type_info(k)["type"]
    return t.split(" ")[0] in ("int", "float") and "allowed" not in type_info(k)


def test_every_schema_key_has_an_entry_in_both_languages():
    kb = knowledge()
    missing = []
    for k in schema_keys():
        e = kb.get(k.kb_key)
        if e is None:
            missing.append(f"{k.key}: no entry '{k.kb_key}' in params.yaml")
            continue
        assert k.description, f"{k.key} has no Field description in the schema"
        if not e.get("zh", {}).get("description"):
            missing.append(f"{k.key}: no zh description")
        for lang in ("en", "zh"):
            if not e.get(lang, {}).get("typical"):
                missing.append(f"{k.key}: no {lang} typical")
            if _numeric(k) and k.key != "train.seed":
                for part in ("too_high", "too_low"):
                    if not e.get(lang, {}).get(part):
                        missing.append(f"{k.key}: no {lang} {part}")
    assert not missing, "\n".join(missing)


def test_no_orphan_entries_and_interactions_name_real_keys():
    kb_keys = {k.kb_key for k in schema_keys()}
    all_keys = kb_keys | {k.key for k in schema_keys()}
    assert set(knowledge()) <= kb_keys, set(knowledge()) - kb_keys
    for name, e in knowledge().items():
        for other in e.get("interacts", []):
            assert other in all_keys, f"{name} interacts with unknown key {other}"


def test_walk_covers_nested_sections_and_list_items():
    keys = {k.key for k in schema_keys()}
    assert {"train.learning_rate", "method.lora_r", "data.clean.near_threshold", "data.augment.prob",
            "data.datasets[].path", "distributed.fsdp"} <= keys
    assert "data.clean" not in keys  # sections are walked, not listed as keys


def test_find_key_with_or_without_section_and_typos():
    assert find_key("train.learning_rate").key == "train.learning_rate"
    assert find_key("lora_r").key == "method.lora_r"
    assert find_key("near_threshold").key == "data.clean.near_threshold"
    with pytest.raises(ConfigError, match="no config key 'learning_rat'") as e:
        find_key("learning_rat")
    assert "did you mean 'learning_rate'" in e.value.fix
    with pytest.raises(ConfigError, match="'max_new_tokens' is ambiguous") as e:
        find_key("max_new_tokens")  # generation.* and eval.*
    assert "generation.max_new_tokens" in e.value.fix and "eval.max_new_tokens" in e.value.fix


def test_ambiguous_short_names_list_every_candidate():
    # `batch_size` used to resolve to eval.batch_size, though a newcomer means the training batch
    for short, want in (("batch_size", {"train.per_device_batch_size", "eval.batch_size"}),
                        ("dropout", {"model.attention_dropout", "model.hidden_dropout", "method.lora_dropout"})):
        with pytest.raises(ConfigError) as e:
            find_key(short)
        assert "ambiguous" in str(e.value) and all(k in e.value.fix for k in want)
    assert find_key("train.batch_size").key == "train.per_device_batch_size"
    assert find_key("eval.batch_size").key == "eval.batch_size"
    assert find_key("clean.ai_phrases").key == "data.clean.ai_phrases"  # the section's own key of that name
    assert find_key("epochs").key == "train.num_epochs"


def test_english_description_is_the_schema_field_description():
    from tunewise.config.schema import TrainConfig

    out = explain_json("train.learning_rate")["train.learning_rate"]
    assert out["description"] == TrainConfig.model_fields["learning_rate"].description
    assert out["description_zh"] and out["too_high"]["zh"] and out["typical"]["en"]
    assert "train.per_device_batch_size" in out["interacts"] and "train.gradient_accumulation_steps" in out["interacts"]


def test_schedulers_are_covered_in_both_languages():
    e = explain_json("lr_scheduler")["train.lr_scheduler"]
    assert "cosine_with_restarts" in e["allowed"] and "polynomial" in e["allowed"]
    for lang in ("en", "zh"):
        for name in e["allowed"]:
            assert name in e["typical"][lang], (lang, name)


def test_lora_rank_and_alpha_interact():
    e = explain_json()
    assert "method.lora_alpha" in e["method.lora_r"]["interacts"]
    assert "method.lora_r" in e["method.lora_alpha"]["interacts"]


def test_text_output_both_languages():
    assert "Too high" in format_key("lora_r") and "过大时" in format_key("lora_r", "zh")
    over = format_overview("zh")
    assert "[train]" in over and "峰值学习率" in over


def test_cli_json_shape(capsys):
    assert main(["explain", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == len(schema_keys())
    e = data["method.lora_dropout"]
    assert set(e) >= {"description", "description_zh", "default", "type", "too_high", "too_low", "typical", "interacts"}
    assert e["default"] == 0.05 and e["ge"] == 0 and e["lt"] == 1
    assert data["train.precision"]["allowed"] == ["auto", "fp32", "bf16", "fp16"]


def test_cli_unknown_key_is_a_user_error(capsys):
    assert main(["explain", "lora_rr"]) == 2
    err = capsys.readouterr().err
    assert "no config key 'lora_rr'" in err and "did you mean 'lora_r'" in err and "Traceback" not in err
