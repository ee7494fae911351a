"""`tunewise chat RUN --tools tools.json`: a call the model makes is shown parsed (name + arguments), the user types
the tool's result, and the model goes on from it, rendered exactly as training renders tool conversations."""

from __future__ import annotations

import json

import pytest
from conftest import train_demo_run

from tunewise.cli import main
from tunewise.errors import DataError
from tunewise.infer.chat import read_tools_file
from tunewise.samples.tools import TOOLS

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dirs, tw_home):
    return train_demo_run(tmp_path_factory.mktemp("chat-tools"), tw_home, train={"max_steps": 1}, data={"val_size": 4})


@pytest.fixture
def tools_file(tmp_path):
    p = tmp_path / "tools.json"
    p.write_text(json.dumps([t["function"] for t in TOOLS]), encoding="utf-8")  # LLaMA-Factory's bare form
    return p


class Scripted:
    """Stands in for generate(): answers from a script and records what it was asked, rendered by the run's template."""

    def __init__(self, answers):
        self.answers, self.prompts, self.tools = list(answers), [], []

    def __call__(self, lm, conversations, *, tools=None, **kw):
        self.prompts.append(lm.template.render(conversations[0], add_generation_prompt=True, tools=tools[0]))
        self.tools.append(tools[0])
        text = self.answers.pop(0)
        return [{"text": text, "token_ids": [], "stopped": True, "hit_max_new_tokens": False, "num_new_tokens": 3}]


def test_interactive_call_result_and_answer(run, tools_file, capsys, monkeypatch):
    script = Scripted([CALL, "It is 18 degrees in Paris."])
    monkeypatch.setattr("tunewise.infer.chat.generate", script)
    lines = iter(["Weather in Paris?", '{"temperature": 18}', ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", str(run), "--tools", str(tools_file)]) == 0
    out = capsys.readouterr().out
    assert 'call> get_weather({"city": "Paris"})' in out
    assert "model> It is 18 degrees in Paris." in out
    assert [t[0]["function"]["name"] for t in script.tools] == ["get_weather", "get_weather"]
    # the second turn was rendered with the call as a call and the typed result as the tool's, as in training
    second = script.prompts[1]
    assert '{"name": "get_weather", "arguments": {"city":"Paris"}}' in second
    assert '<tool_response>\n{"temperature": 18}\n</tool_response>' in second
    assert "# Tools" in second


def test_a_call_that_is_not_json_is_reported_not_run(run, tools_file, capsys, monkeypatch):
    monkeypatch.setattr("tunewise.infer.chat.generate", Scripted(['<tool_call>\n{"name": "get_weather", "arg\n</tool_call>']))
    lines = iter(["Weather?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", str(run), "--tools", str(tools_file)]) == 0
    cap = capsys.readouterr()
    assert not any(line.startswith("call> ") for line in cap.out.splitlines())
    assert "not valid and was not run" in cap.err


def test_one_shot_with_tools_prints_the_parsed_call(run, tools_file, capsys, monkeypatch):
    monkeypatch.setattr("tunewise.infer.chat.generate", Scripted([CALL]))
    assert main(["chat", str(run), "--tools", str(tools_file), "--prompt", "Weather in Paris?"]) == 0
    assert 'call> get_weather({"city": "Paris"})' in capsys.readouterr().out


def test_real_generation_with_tools_renders_the_tools_block(run, tools_file):
    from tunewise.infer.chat import ChatSession

    s = ChatSession(run, tools=read_tools_file(tools_file), max_new_tokens=2, temperature=0.0)
    res = s.ask("Weather in Paris?")
    assert "calls" in res and res["num_new_tokens"] <= 2


@pytest.mark.parametrize("content,match", [
    ("[{\"name\": \"f\",}]", "not valid JSON"),
    ("[{\"description\": \"no name\"}]", "unusable tool"),
    ("[]", "lists no tools"),
])
def test_bad_tools_file(tmp_path, content, match):
    p = tmp_path / "t.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match) as e:
        read_tools_file(p)
    assert str(p) in e.value.where


def test_tools_file_forms(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"tools": TOOLS}), encoding="utf-8")
    assert read_tools_file(p) == TOOLS
    with pytest.raises(DataError, match="no tools file"):
        read_tools_file(tmp_path / "missing.json")
