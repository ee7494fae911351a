"""Export of a run trained with tools: the Go TEMPLATE renderer on the values Ollama hands a template with tools,
every registry tools form against the hermes rendering training used, the Modelfile of a tool run, the refusal of
a run whose tokenizer template rendered tools natively, and a tiny model trained on tool calls, exported to GGUF +
Modelfile and verified on a call prompt through llama.cpp."""

import json
import shutil

import llama_cpp  # noqa: F401  (requirements: llama.cpp runs the GGUF; missing must fail, not skip)
import pytest
from conftest import tiny_config, write_config

from tunewise.cli import main
from tunewise.errors import RunError
from tunewise.export.gotemplate import (
    GoTemplateError,
    ollama_values,
    render,
    template_vars,
    tool_call_tag,
)
from tunewise.export.ollama import (
    TOOL_PROBES,
    check_equivalent,
    modelfile_text,
    ollama_template,
    parse_modelfile,
    tools_problems,
)
from tunewise.templates import ChatTemplate, registry_entry, registry_names

pytestmark = pytest.mark.xdist_group("toolexport")  # one worker trains the module's tool run once (~1 min)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather <now> & later",
    "parameters": {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
                                                    "city": {"type": "string", "description": "City"}},
                   "required": ["city"]}}}


def _call(name, args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


# ------------------------------------------------------------------------------------------- the Go renderer
def test_gotemplate_prints_tools_and_calls_as_go_writes_them():
    """The expected strings are written out by hand, as Go's json.Marshal writes them: templateTool's field order,
    properties sorted by name, fields Ollama does not keep dropped, <, > and & escaped; a call's arguments with
    sorted keys and Go's numbers (1.0 -> 1), whether printed (templateArgs.String) or passed to json."""
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
            {"role": "assistant", "content": "", "tool_calls": [
                _call("get_weather", {"unit": "c", "city": "A&B <x>"}),
                {"function": {"name": "get_weather", "arguments": '{"city": "東京", "n": 1.0}'}}]},  # OpenAI's string
            {"role": "tool", "name": "get_weather", "content": "r1"}, {"role": "tool", "content": "r2"}]
    v = ollama_values(msgs, [WEATHER])
    tool = ('{"type":"function","function":{"name":"get_weather",'
            '"description":"Weather \\u003cnow\\u003e \\u0026 later",'
            '"parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":'
            '"City"},"unit":{"type":"string","enum":["c","f"]}}}}}')
    assert render("{{ range .Tools }}{{ . }}|{{ json . }}{{ end }}", v) == f"{tool}|{tool}"
    assert render("{{ json .Tools }}|{{ range .Tools }}{{ .Function.Name }}:{{ .Function.Parameters.Properties }}"
                  "{{ end }}", v) == (f"[{tool}]|get_weather:" + '{"city":{"type":"string","description":"City"},'
                                      '"unit":{"type":"string","enum":["c","f"]}}')
    calls = ('{{ range .Messages }}{{ .Role }}({{ .ToolName }}):{{ range $i, $c := .ToolCalls }}{{ if $i }},{{ end }}'
             '{{ .Function.Name }}{{ .Function.Arguments }}={{ json .Function.Arguments }}{{ end }};{{ end }}')
    assert render(calls, v) == (
        'user():;'  # the two user turns are one (collate merges them: "a\n\nb")
        'assistant():get_weather{"city":"A\\u0026B \\u003cx\\u003e","unit":"c"}='
        '{"city":"A\\u0026B \\u003cx\\u003e","unit":"c"},'
        'get_weather{"city":"東京","n":1}={"city":"東京","n":1};'
        'tool(get_weather):;tool():;')  # tool results are never merged: each keeps its own turn and name
    assert v["Messages"][0]["Content"] == "a\n\nb" and len(v["Messages"]) == 4
    assert render("{{ if .Tools }}T{{ end }}{{ range .Messages }}{{ if .ToolCalls }}C{{ end }}{{ end }}",
                  ollama_values(msgs[:2])) == ""  # no tools, no calls: both read as false
    # What Go would print in fmt's form, or a field Ollama's types lack, is an error, not a guess.
    for bad, why in [("{{ range .Messages }}{{ .ToolCalls }}{{ end }}", "fmt form"),
                     ("{{ range .Messages }}{{ .Nope }}{{ end }}", "can't evaluate field Nope in type templateMessage"),
                     ("{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Index }}{{ end }}{{ end }}", "Index"),
                     ("{{ range .Messages }}{{ range .ToolCalls }}{{ range .Function.Arguments }}{{ end }}"
                      "{{ end }}{{ end }}", "range over a templateArgs"),
                     ("{{ range .Tools }}{{ .Function }}{{ end }}", "fmt form")]:
        with pytest.raises(GoTemplateError, match=why):
            render(bad, v)


# Ollama's own cases for the tool-call tag (ollama tools/template_test.go TestParseTag).
PARSE_TAG = [
    ("", "{"), ("{{if .ToolCalls}}{{end}}", "{"), ("{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}{{end}}", "{"),
    ("{{if .ToolCalls}}```json\n{{end}}", "```json"),
    ("{{if .ToolCalls}}[{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "["),
    ("{{if .ToolCalls}}\n [ {{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "["),
    ("{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "{"),
    ("{{if .ToolCalls}} {{range .ToolCalls}}{{ . }}{{end}}{{end}}", "{"),
    ("{{if .ToolCalls}}{{range .ToolCalls}}\n{{ . }}\n{{end}}{{end}}", "{"),
    ('{{if .ToolCalls}}{{range .ToolCalls}}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}'
     '{{end}}{{end}}', "{"),
    ('{{if .ToolCalls}}{{range .ToolCalls}}\r\n{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}'
     '{{end}}{{end}}', "{"),
    ('{{if .ToolCalls}}{{range .ToolCalls}}<tool_call>{"name": "{{ .Function.Name }}", "arguments": '
     '{{ .Function.Arguments }}}</tool_call>{{end}}{{end}}', "<tool_call>"),
    ('{{if .ToolCalls}}\n{{range .ToolCalls}}<tool_call>{"name": "{{ .Function.Name }}"}</tool_call>{{end}}{{end}}',
     "<tool_call>"),
    ("{{if .ToolCalls}}First text{{if .Something}}inner{{end}}Second text{{end}}", "First text"),
    ("{{if .ToolCalls}}[TOOL_CALL] [{{end}}", "[TOOL_CALL] ["),
    # ours: the first .ToolCalls block counts, found inside other blocks; an action before any text ends the search
    ('{{ range .Messages }}{{ if .Content }}x{{ else if .ToolCalls }}<tool_call>\n{"a"{{ end }}{{ end }}',
     "<tool_call>"),
    ("{{ range .Messages }}{{ if .ToolCalls }}{{ .Content }}<tool_call>{{ end }}{{ end }}", "{"),
    ("{{ if .Content }}{{ if .ToolCalls }}\n{{ end }}{{ end }}{{ if .ToolCalls }}<tool_call>{{ end }}", "{"),
]


@pytest.mark.parametrize("src,tag", PARSE_TAG)
def test_tool_call_tag_is_found_as_ollama_finds_it(src, tag):
    assert tool_call_tag(src) == tag


def test_template_vars_name_what_ollama_reads():
    assert {"messages", "tools", "toolcalls", "$"} <= template_vars(
        "{{ range $m := .Messages }}{{ $.Tools }}{{ if .ToolCalls }}{{ end }}{{ end }}")
    assert "tools" not in template_vars(registry_entry("chatml")["ollama"])


# ------------------------------------------------------------------------------------------- registry tools forms
def _template(name, tok, system=None):
    t = ChatTemplate.from_registry(name, tok)
    t.tools, t.system = "hermes", system
    return t


@pytest.fixture(scope="module")
def tok(tiny_model_dirs):
    from tunewise.models.load import load_tokenizer

    return load_tokenizer(tiny_model_dirs["tiny-llama"])


@pytest.mark.parametrize("name", registry_names())
def test_every_tools_form_renders_like_training(name, tok):
    """Each registry record's tools form renders, through the Go renderer, what training rendered (the hermes form)
    on the plain probes and the tool probes, with the run's system prompt or without, and Ollama would treat it as
    a tools model whose tag is <tool_call>. The probes hold what Go's JSON changes (escapes, key order, numbers)."""
    for system in (None, "You are Tiny."):
        t = _template(name, tok, system)
        go = ollama_template(t, tools=True)
        assert check_equivalent(go, t, tools=True) == [], name
    assert tools_problems(go) == [] and tool_call_tag(go) == "<tool_call>"
    rendered = [t.render(p, add_generation_prompt=True, tools=tools) for p, tools in TOOL_PROBES]
    assert all("<tool_call>" not in r or "</tool_call>" in r for r in rendered)
    joined = "".join(rendered)
    for piece in ("# Tools", "\\u003cas typed\\u003e \\u0026", '"value":1}', "<tool_response>\n0.62\n</tool_response>",
                  "Checking both.\n<tool_call>", "</tool_call>\n<tool_call>", '"extra":{"a":null,"z":[2.5,3]}'):
        assert piece in joined, (name, piece)


@pytest.mark.parametrize("name", registry_names())
def test_every_character_of_a_tools_form_counts(name, tok, monkeypatch):
    """The check is strict enough to catch any one-character slip: each text character of the form deleted in
    turn (outside Go actions and placeholders) makes some probe differ."""
    import re

    from tunewise.export import ollama

    form = registry_entry(name)["ollama_tools"]
    fixed = [m.span() for m in re.finditer(r"\{\{.*?\}\}|\{tools\}|\{eos\}", form, re.S)]
    t = _template(name, tok)
    missed = []
    for i in range(len(form)):
        if any(a <= i < b for a, b in fixed):
            continue
        broken = form[:i] + form[i + 1:]
        monkeypatch.setattr(ollama, "registry_entry", lambda n, b=broken: {**registry_entry(n), "ollama_tools": b})
        if not check_equivalent(ollama_template(t, tools=True), t, tools=True):
            missed.append((i, form[max(0, i - 20):i + 20]))
    assert not missed, missed


def test_a_tokenizer_template_matched_to_chatml_gets_its_tools_form(tiny_model_dirs):
    """tiny-qwen2's own ChatML template (as SmolLM2's is) is matched to the chatml record when training; its tools
    form renders like the tokenizer template with tools, also with a run system prompt."""
    from tunewise.models.load import load_tokenizer
    from tunewise.templates import registry_equivalent

    t = ChatTemplate.from_tokenizer(load_tokenizer(tiny_model_dirs["tiny-qwen2"]))
    t.tools, t.system = "hermes", "You are a helpful AI assistant."
    t.registry = registry_equivalent(t)
    assert t.registry == "chatml" and check_equivalent(ollama_template(t, tools=True), t, tools=True) == []


def test_tools_form_is_refused_when_ollama_would_not_use_it(tok):
    t = _template("chatml", tok)
    go = ollama_template(t, tools=True)
    wrong_tag = go.replace("{{ if .ToolCalls }}", "{{ if .ToolCalls }}{{ .Content }}", 1)
    assert any("would look for '{'" in p for p in check_equivalent(wrong_tag, t, tools=True))
    assert any("never reads .Tools" in p for p in tools_problems(registry_entry("chatml")["ollama"]))
    # the plain form (runs without tools) does not render tools, so it cannot pass for a tool run
    assert check_equivalent(ollama_template(t), t, tools=True)


def test_modelfile_of_a_tool_run_holds_the_tools_form(tok):
    class G:
        temperature, top_k, top_p, repetition_penalty, max_new_tokens = 0.7, 50, 0.9, 1.1, 128

    t = _template("gemma", tok)
    mf = parse_modelfile(modelfile_text(gguf_name="model.gguf", go_template=ollama_template(t, tools=True),
                                        stops=t.stop_strings, generation=G, num_ctx=1024))
    go = mf["template"]
    assert "$.Tools" in go and "{{ if .ToolCalls }}" in go and "<tool_call>" in go and "<tool_response>" in go
    assert tool_call_tag(go) == "<tool_call>" and check_equivalent(go, t, tools=True) == []


def test_a_native_tools_template_refuses_ollama(tok):
    native = ChatTemplate(name="tokenizer", source="tokenizer", tools="native", chat_template=(
        "{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{{ m['content'] }}{% if m.tool_calls %}<tool_call>{{ m.tool_calls | tojson }}</tool_call>{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
        registry="chatml")
    assert native.tool_format == "native"
    with pytest.raises(RunError) as e:
        ollama_template(native, tools=True)
    assert "template.tools: hermes" in e.value.fix and "without --ollama" in e.value.fix
    assert ollama_template(native)  # a run of it without tools keeps its plain Ollama form


def test_verdict_fails_when_the_calls_differ():
    """The verdict alone: a prompt with tools whose two answers call differently fails, named as a tool-call
    difference (after template, tokens and stops), with a fix by GGUF type; agreeing calls pass."""
    from tunewise.export.verify import _calls_row, judge

    T = ChatTemplate(name="chatml", chat_template="", stop_strings=["<|im_end|>"], stop_token_ids=[2])
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    other = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'

    def row(hf, gguf):
        return {"prompt": "Weather in Paris?", "template_match": True, "prompt_tokens_match": True,
                "tokenizer_match": True, "hf_stopped": True, "gguf_stopped": True, "gguf_stop_token": "<|im_end|>",
                "hf_tokens": 20, "gguf_tokens": 20, "match_tokens_prefix": 20, "logit_error": 0.001,
                **_calls_row(hf, gguf, [WEATHER], True)}

    ok = judge([row(call, call)], "f16", T, has_modelfile=True)
    assert ok["status"] == "PASS" and ok["tool_calls_agree"] and ok["tool_prompts"] == 1
    assert ok["prompts"][0]["hf_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    for gtype, fix in (("f16", "--gguf f32"), ("q4_k_m", "wider type")):
        bad = judge([row(call, other)], gtype, T, has_modelfile=True)
        assert bad["status"] == "FAIL" and bad["cause"].startswith("tool calls") and not bad["tool_calls_agree"], bad
        assert 'get_weather({"city": "Rome"})' in bad["cause"] and fix in bad["fix"]
    cause = judge([row(call, "It is sunny.")], "f16", T, has_modelfile=True)["cause"]
    assert cause.endswith('calls nothing, the trained model get_weather({"city": "Paris"})'), cause
    assert judge([row("x", "y")], "f16", T, has_modelfile=True)["tool_calls_agree"]  # no calls on either side


# ------------------------------------------------------------------------------------------- a tiny tool run
def _tool_records(root):
    """Single-call weather conversations from the sample tool set, offering only get_weather (prompts stay short)."""
    from tunewise.fileio import read_jsonl
    from tunewise.samples.tools import TOOLS, write_tool_dataset

    recs = [r for _, r in read_jsonl(write_tool_dataset(root / "tools.jsonl", n=32))]
    calls = [[c["function"]["name"] for m in r["messages"] for c in m.get("tool_calls") or []] for r in recs]
    return [dict(r, tools=TOOLS[:1]) for r, c in zip(recs, calls) if c == ["get_weather"]]


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory, tiny_model_dirs, module_home):
    """tiny-qwen2 (its own ChatML template, matched to the chatml record, as SmolLM2's is) trained full-weight
    until it writes the weather call of its training records.

    It trains on each record as the plain turns tunewise renders for it (templates/tools.to_hermes: tools block in
    the system turn, the call as <tool_call> text, the result as a user turn), which is token for token what
    training on the tool record renders, and the run's data files then hold the tool records themselves, as
    `tunewise train` writes them once the data layer reads tools (this branch's data layer does not yet).

    Padded, not packed: four ~1,000-token rows packed into one make attention over the whole 4,000 (block-diagonal
    mask, computed in full on a CPU), which for this 2-layer model is most of the work (136 s packed, 56 s padded)."""
    from tunewise.templates.tools import normalize_call, to_hermes

    root = tmp_path_factory.mktemp("toolexport")
    recs = [{"messages": [dict(m, tool_calls=[normalize_call(c, "x") for c in m["tool_calls"]]) if m.get("tool_calls")
                          else m for m in r["messages"]], "tools": r["tools"]} for r in _tool_records(root)]
    plain = root / "plain.jsonl"
    plain.write_text("".join(json.dumps({"messages": to_hermes(r["messages"], r["tools"])}, ensure_ascii=False) + "\n"
                             for r in recs), encoding="utf-8")
    cfg = tiny_config(root, plain, model="tiny-qwen2", method={"name": "full"},
                      data={"val_size": 0, "max_length": 1024},
                      train={"max_steps": 200, "learning_rate": 1e-2, "per_device_batch_size": 4, "eval_steps": 1000,
                             "logging_steps": 50, "packing": False})
    assert main(["train", str(write_config(root / "tools.yaml", cfg)), "--set", "run.name=tools"]) == 0
    run = root / "runs" / "tools"
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in recs]
    (run / "data" / "train.jsonl").write_text("".join(lines), encoding="utf-8")
    (run / "data" / "val.jsonl").write_text("".join(lines[:2]), encoding="utf-8")
    return run


def test_uses_tools(tool_run, tmp_path):
    from tunewise.runs import RunDir

    assert RunDir(tool_run).uses_tools
    plain = tmp_path / "plain"
    (plain / "data").mkdir(parents=True)
    (plain / "data" / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "the tools"}]}\n')
    assert not RunDir(plain).uses_tools


def test_tool_run_exports_to_ollama_and_verifies_a_call(tool_run):
    assert main(["export", str(tool_run), "--gguf", "f16", "--ollama", "--verify-prompts", "3"]) == 0
    exp = tool_run / "export"
    go = parse_modelfile((exp / "Modelfile").read_text())["template"]
    assert ".Tools" in go and ".ToolCalls" in go and tool_call_tag(go) == "<tool_call>"
    v = json.loads((exp / "verify.json").read_text())
    assert v["status"] == "PASS" and v["templates_agree"] and v["tokens_agree"] and v["tool_calls_agree"], v
    first = v["prompts"][0]
    assert first["call_prompt"] and first["tools"] == ["get_weather"] and v["tool_prompts"] == len(v["prompts"]) == 3
    # the trained model calls the weather tool, and the GGUF run by llama.cpp through the TEMPLATE calls it alike
    assert [c["name"] for c in first["hf_calls"]] == ["get_weather"] and first["hf_calls"] == first["gguf_calls"], first
    assert all(p["hf_calls"] == p["gguf_calls"] for p in v["prompts"])


def test_tool_run_gguf_without_modelfile_verifies_the_call_too(tool_run):
    """Without a Modelfile the GGUF's embedded template renders the hermes turns (the client rewrites the
    conversation as tunewise does); the call prompt is checked the same way."""
    from tunewise.export.verify import verify_gguf

    gguf = tool_run / "export" / "model.gguf"
    if not gguf.exists():
        assert main(["export", str(tool_run), "--gguf", "f16"]) == 0
    v = verify_gguf(tool_run, gguf, "f16", n_prompts=1)
    assert v["status"] == "PASS" and v["tool_calls_agree"] and v["checked_prompts"] == 1, v
    assert v["prompts"][0]["hf_calls"] and v["prompts"][0]["hf_calls"] == v["prompts"][0]["gguf_calls"]


def test_native_tools_run_refuses_ollama_before_any_work(tool_run, tmp_path, capsys):
    run = tmp_path / "native"
    shutil.copytree(tool_run, run, ignore=shutil.ignore_patterns("export", "checkpoints"))
    tpl = json.loads((run / "template.json").read_text())
    tpl["tools"] = "native"
    (run / "template.json").write_text(json.dumps(tpl))
    assert main(["export", str(run), "--ollama"]) == 2
    err = capsys.readouterr().err
    assert "template.tools: hermes" in err and "the GGUF embeds the tokenizer's template" in err
    assert not (run / "export").exists()
