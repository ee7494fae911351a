"""The Ollama TEMPLATE we write renders the training template string-for-string (no Ollama needed)."""

import pytest

from tunewise.export.gotemplate import GoTemplateError, ollama_values, render
from tunewise.export.ollama import PROBES, check_equivalent, modelfile_text, ollama_template, parse_modelfile
from tunewise.templates import ChatTemplate, registry_names


def test_go_subset_renderer():
    tpl = ('{{- $first := true }}{{ range $i, $m := .Messages }}{{ if eq $m.Role "user" }}U{{ $i }}:{{ .Content }}'
           '{{ else if eq .Role "assistant" }}A:{{ .Content }}{{ else }}S{{ end }}{{ if $first }}!{{ end }}'
           '{{ $first = false }}\n  {{- end }}{{ if and .System (not .Missing) }} sys={{ .System }}{{ end }}')
    vals = ollama_values([{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                          {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}])
    assert vals["Messages"][1]["Content"] == "a\n\nb"  # consecutive turns of one role merge, like Ollama
    assert render(tpl, vals) == "S!U1:a\n\nbA:c sys=s"
    with pytest.raises(GoTemplateError, match="'with' is not supported"):
        render("{{ with .System }}x{{ end }}", vals)


@pytest.mark.parametrize("name", registry_names())
def test_registry_templates_have_equivalent_ollama_templates(name, tiny_model_dirs):
    from tunewise.models.load import load_tokenizer

    tok = load_tokenizer(tiny_model_dirs["tiny-llama"])
    t = ChatTemplate.from_registry(name, tok)
    go = ollama_template(t)
    assert check_equivalent(go, t) == []
    # a different family's template is caught
    other = ollama_template(ChatTemplate.from_registry("chatml" if name != "chatml" else "gemma", tok))
    assert check_equivalent(other, t)


def test_tokenizer_template_maps_to_registry(tiny_model_dirs):
    from tunewise.models.load import load_tokenizer

    t = ChatTemplate.from_tokenizer(load_tokenizer(tiny_model_dirs["tiny-qwen2"]))
    assert check_equivalent(ollama_template(t), t) == []
    odd = ChatTemplate(name="odd", chat_template="{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}")
    from tunewise.errors import RunError

    with pytest.raises(RunError, match="no Ollama equivalent"):
        ollama_template(odd)


def test_modelfile_round_trip():
    class G:
        temperature, top_k, top_p, repetition_penalty, max_new_tokens = 0.7, 50, 0.9, 1.1, 128

    go = '{{ if .System }}S{{ end }}{{ range .Messages }}<t>{{ .Content }}<e>\n{{ end }}<t>'
    text = modelfile_text(gguf_name="model.gguf", go_template=go, stops=["<e>", '"q"'], generation=G, num_ctx=512)
    mf = parse_modelfile(text)
    assert mf["from"] == "./model.gguf" and mf["template"] == go and mf["stop"] == ["<e>", '"q"']
    assert mf["parameters"] == {"temperature": "0.7", "top_k": "50", "top_p": "0.9", "repeat_penalty": "1.1",
                                "num_ctx": "512", "num_predict": "128"}
    assert len(PROBES) >= 3


def test_the_template_record_names_its_ollama_form_and_export_reads_it(tiny_model_dirs, monkeypatch):
    """One registry record holds the Jinja and the Ollama form; template.json's `registry` names it, so export
    takes the Ollama form from there instead of matching the template against every registry entry."""
    from tunewise.export import ollama
    from tunewise.models.load import load_tokenizer
    from tunewise.templates import registry_entry, registry_equivalent

    for name in registry_names():
        entry = registry_entry(name)
        assert entry["chat_template"] and entry["ollama"], name
    t = ChatTemplate.from_tokenizer(load_tokenizer(tiny_model_dirs["tiny-qwen2"]))
    assert t.registry is None  # a tokenizer template: matched once, when training writes template.json
    t.registry = registry_equivalent(t)
    assert t.registry in registry_names()
    assert ChatTemplate.from_json(t.to_dict()).registry == t.registry

    def no_matching(_):
        raise AssertionError("export matched the template against the registry again")

    monkeypatch.setattr(ollama, "registry_equivalent", no_matching)
    go = ollama_template(t)
    assert go == registry_entry(t.registry)["ollama"].replace("{eos}", t.eos_token or "")
    assert check_equivalent(go, t) == []
