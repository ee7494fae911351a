"""Tool calling in the template layer: the hermes rendering and its masking, the native rendering (exactly
apply_chat_template(..., tools=...)), Go-compatible JSON, and the parser chat, eval and export read answers with."""

from __future__ import annotations

import json

import pytest

from tunewise.errors import ConfigError
from tunewise.evaluate.tools import score_tool_answers, tool_turns
from tunewise.models.tiny import CHATML_TEMPLATE, build_bytelevel_tokenizer
from tunewise.samples.tools import TOOLS, tool_records
from tunewise.templates import ChatTemplate, choose_template
from tunewise.templates.encode import IGNORE, encode_messages
from tunewise.templates.tools import (
    ToolError,
    go_json,
    normalize_call,
    normalize_tools,
    ollama_tool,
    parse_answer,
    to_hermes,
)

# Qwen2.5's tool-capable template (tokenizer_config.json of Qwen2.5-*-Instruct), as a native template
QWEN25 = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)

CALL = [{"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}}]},
        {"role": "tool", "name": "get_weather", "content": "RESULT-18C"},
        {"role": "assistant", "content": "It is 18 degrees."}]


@pytest.fixture(scope="module")
def chatml():
    tok = build_bytelevel_tokenizer(chat_template=CHATML_TEMPLATE)
    return tok, choose_template("auto", tok, "qwen2")


def _supervised(tok, enc) -> str:
    return tok.decode([t for t, y in zip(enc.input_ids, enc.labels) if y != IGNORE])


def test_hermes_render_and_masking(chatml):
    tok, t = chatml
    assert t.tool_format == "hermes"  # a ChatML template without tools of its own
    text = t.render(CALL, tools=TOOLS)
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert '{"type":"function","function":{"name":"get_weather"' in text
    # the call as Ollama would print it: sorted, compact arguments inside the literal wrapper
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris","unit":"celsius"}}' \
           '\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\nRESULT-18C\n</tool_response><|im_end|>" in text
    enc = encode_messages(tok, t, CALL, max_length=4096, tools=TOOLS)
    sup = _supervised(tok, enc)
    assert '"arguments": {"city":"Paris","unit":"celsius"}}' in sup and "It is 18 degrees." in sup
    assert sup.count("<|im_end|>") == 2  # the call turn and the answer turn each end supervised
    assert "RESULT-18C" not in sup and "# Tools" not in sup and "get_weather\",\"description" not in sup


def test_hermes_keeps_the_system_prompt_and_the_builtin_one(chatml):
    tok, t = chatml
    sys_first = t.render([{"role": "system", "content": "Be brief."}, *CALL[:1]], tools=TOOLS)
    assert sys_first.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    builtin = ChatTemplate(name="x", chat_template=t.chat_template, builtin_system="I am Smol.", tools="hermes")
    assert to_hermes(CALL[:1], TOOLS, "I am Smol.")[0]["content"].startswith("I am Smol.\n\n# Tools")
    assert "I am Smol.\n\n# Tools" in builtin.render(CALL[:1], tools=TOOLS)
    # no tools and no calls: rendered exactly as before
    plain = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert t.render(plain) == t._render(plain)


def test_parallel_calls_and_results_render_in_order(chatml):
    tok, t = chatml
    rec = next(r for r in tool_records(8) if len(r["messages"][1].get("tool_calls") or []) == 2)
    text = t.render(rec["messages"], tools=rec["tools"])
    assert text.count("<tool_call>\n{\"name\": \"get_weather\"") == 2
    assert text.count("<tool_response>") == 2  # one user turn per result, never merged


def test_native_render_is_apply_chat_template(chatml):
    tok = build_bytelevel_tokenizer(chat_template=QWEN25)
    t = choose_template("auto", tok, "qwen2")
    assert t.tool_format == "native"
    for rec in tool_records(8):
        want = tok.apply_chat_template(rec["messages"], tools=rec["tools"], tokenize=False)
        assert t.render(rec["messages"], tools=rec["tools"]) == want
    enc = encode_messages(tok, t, CALL, max_length=4096, tools=TOOLS)
    sup = _supervised(tok, enc)
    assert '"arguments": {"unit": "celsius", "city": "Paris"}' in sup and "RESULT-18C" not in sup
    assert choose_template("auto", tok, "qwen2", tools="hermes").tool_format == "hermes"


def test_native_refused_when_the_template_has_no_tools(chatml):
    tok, _ = chatml
    with pytest.raises(ConfigError, match="does not render tools itself") as e:
        choose_template("auto", tok, "qwen2", tools="native")
    assert e.value.where == "template.tools"


def test_go_json_is_what_ollama_prints():
    assert go_json({"b": 1.0, "a": "<x> & y", "c": [2.5, {"z": 1, "y": None}]}) == \
        '{"a":"\\u003cx\\u003e \\u0026 y","b":1,"c":[2.5,{"y":null,"z":1}]}'
    tool = normalize_tools(json.dumps([{"name": "f", "parameters": {"type": "object", "required": ["b"], "properties": {
        "b": {"type": "integer", "default": 3, "minimum": 0, "description": "B"}, "a": {"type": ["string"]}}}}]), "tools")[0]
    # Ollama's struct order (type, function{name, description, parameters{type, required, properties}}), properties
    # sorted, unknown schema keys (default, minimum) gone, a one-element type list written as a string
    assert go_json(ollama_tool(tool), sort_keys=False) == (
        '{"type":"function","function":{"name":"f","description":"","parameters":{"type":"object","required":["b"],'
        '"properties":{"a":{"type":"string"},"b":{"type":"integer","description":"B"}}}}}')


def test_normalize_rejects_bad_tool_data():
    with pytest.raises(ToolError, match="'arguments' is not valid JSON"):
        normalize_call({"name": "f", "arguments": "{city: Paris}"}, "messages[1].tool_calls[0]")
    with pytest.raises(ToolError, match="must be a JSON object"):
        normalize_call({"name": "f", "arguments": "[1, 2]"}, "x")
    with pytest.raises(ToolError, match="function name"):
        normalize_call({"name": 'f"; drop', "arguments": {}}, "x")
    with pytest.raises(ToolError, match="described twice"):
        normalize_tools([{"name": "f"}, {"type": "function", "function": {"name": "f"}}], "tools")
    assert normalize_call({"function": {"name": "f", "arguments": '{"a": 1}'}, "id": "c1"}, "x") == \
        {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}, "id": "c1"}


@pytest.mark.parametrize("text,calls,invalid,content", [
    ('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>', [{"name": "f", "arguments": {"a": 1}}], 0, ""),
    ('Sure.\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "g", "arguments": '
     '"{\\"x\\": 2}"}\n</tool_call>', [{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"x": 2}}], 0, "Sure."),
    ('<tool_call>\n{"name": "f", "arguments": {"a": 1}\n</tool_call>', [], 1, ""),        # not valid JSON
    ('<tool_call>\n{"arguments": {"a": 1}}\n</tool_call>', [], 1, ""),                    # no name
    ('<tool_call>\n{"name": "f", "arguments": {"a": 1}}', [{"name": "f", "arguments": {"a": 1}}], 0, ""),  # cut off
    ('{"name": "f", "parameters": {"a": 1}}', [{"name": "f", "arguments": {"a": 1}}], 0, ""),  # Llama 3.1's bare JSON
    ("It is sunny.", [], 0, "It is sunny."),
])
def test_parse_answer(text, calls, invalid, content):
    p = parse_answer(text)
    assert (p.calls, p.invalid, p.content) == (calls, invalid, content)


def test_tool_scores_are_computed_by_parsing():
    ref = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"city": "Rome"}}]
    items = [
        # both calls right, in the other order, numbers as floats: exact
        {"reference_calls": ref, "prediction": '<tool_call>\n{"name": "get_time", "arguments": {"city": "Rome"}}\n'
         '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
         "hit_max_new_tokens": False},
        # right names, one wrong argument
        {"reference_calls": ref, "prediction": '<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n'
         '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
         "hit_max_new_tokens": False},
        # not valid JSON: no call at all
        {"reference_calls": ref[:1], "prediction": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"\n'
         '</tool_call>', "hit_max_new_tokens": True},
        {"reference_calls": [], "prediction": "Hello!", "hit_max_new_tokens": False},
        {"reference_calls": [], "prediction": '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
         "hit_max_new_tokens": False},
    ]
    s = score_tool_answers(items)
    assert s["tool_call_json_valid"] == pytest.approx(5 / 6)
    assert s["tool_call_rate"] == pytest.approx(2 / 3)
    assert s["tool_name_accuracy"] == pytest.approx(2 / 3)
    assert s["tool_call_exact_match"] == pytest.approx(1 / 3)
    assert s["tool_argument_match"] == pytest.approx(3 / 5)
    assert s["tool_no_call_accuracy"] == pytest.approx(1 / 2)
    assert s["tool_no_stop_rate"] == pytest.approx(1 / 5)
    assert (s["tool_call_turns"], s["tool_no_call_turns"]) == (3, 2)


def test_tool_turns_test_every_answer():
    rec = tool_records(1)[0]  # user -> call -> result -> answer
    turns = tool_turns([rec, {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}])
    assert [bool(t["reference"].get("tool_calls")) for t in turns] == [True, False]
    assert turns[1]["messages"][-1]["role"] == "tool"


@pytest.mark.parametrize("given,exact", [(12.0, 1.0), (12, 1.0), (13, 0.0), ("12", 0.0)])
def test_numbers_match_as_numbers(given, exact):
    ref = [{"name": "convert_units", "arguments": {"value": 12, "from_unit": "km", "to_unit": "mi"}}]
    pred = json.dumps({"name": "convert_units", "arguments": {"value": given, "from_unit": "km", "to_unit": "mi"}})
    s = score_tool_answers([{"reference_calls": ref, "prediction": f"<tool_call>\n{pred}\n</tool_call>",
                             "hit_max_new_tokens": False}])
    assert s["tool_call_exact_match"] == exact
    assert s["tool_argument_match"] == pytest.approx((2 + exact) / 3)
