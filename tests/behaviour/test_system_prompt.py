"""The system prompt a run gives conversations without one: detected, decided from the data, used everywhere."""

from tunewise.samples.demo import demo_records
from tunewise.data.identity import identity_records
from tunewise.templates import ChatTemplate, find_builtin_system
from tunewise.templates.system import NEUTRAL_SYSTEM, builtin_names, choose_system, describe

SMOL = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
GEMMA_FOLDS_SYSTEM = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set p = messages[0]['content'] + '\\n\\n' %}"
                      "{% set ms = messages[1:] %}{% else %}{% set p = '' %}{% set ms = messages %}{% endif %}{% for m in ms %}"
                      "{{ '<start_of_turn>' + m['role'] + '\\n' + (p if loop.first else '') + m['content'] + '<end_of_turn>\\n' }}"
                      "{% endfor %}")


def _identity_chats():
    return [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
            for r in identity_records("Orion", "Bluefield Labs")]


def test_builtin_system_is_found_by_rendering():
    assert find_builtin_system(ChatTemplate("smol", SMOL)) == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert find_builtin_system(ChatTemplate("g", GEMMA_FOLDS_SYSTEM, bos_token="<bos>")) is None
    plain = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    assert find_builtin_system(ChatTemplate("p", plain)) is None


def test_names_in_builtin_prompts():
    assert builtin_names("You are a helpful AI assistant named SmolLM, trained by Hugging Face") == ("SmolLM", "Hugging Face")
    assert builtin_names("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.") == ("Qwen", "Alibaba Cloud")
    assert builtin_names("You are a helpful assistant.") == ()


def test_identity_data_replaces_a_contradicting_builtin_prompt():
    builtin = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    c = choose_system(None, builtin, _identity_chats())
    assert c.reason == "replaced" and c.system == NEUTRAL_SYSTEM and c.identity_answers > 80 and c.naming_builtin == 0
    assert "SmolLM" in describe(c) and "template.system" in describe(c) and "SmolLM" in describe(c, "zh")


def test_data_that_agrees_keeps_the_builtin_prompt():
    builtin = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    agree = [{"messages": [{"role": "user", "content": f"q{i}"},
                           {"role": "assistant", "content": f"I am SmolLM, made by Hugging Face. Answer {i}."}]} for i in range(20)]
    assert choose_system(None, builtin, agree).reason == "builtin"
    tasks = [r for r in demo_records() if len(r["messages"][-1]["content"]) < 12]  # labels only: no identity stated
    assert choose_system(None, builtin, tasks).system == builtin
    assert describe(choose_system(None, builtin, tasks)) is None


def test_the_users_system_prompt_always_wins():
    c = choose_system("You are Orion.", "You are a helpful AI assistant named SmolLM", _identity_chats())
    assert c.reason == "user" and c.system == "You are Orion."
    assert choose_system(None, None, _identity_chats()).system is None


def test_run_system_is_rendered_and_exported_the_same_way(tiny_model_dirs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dirs["tiny-qwen2"])
    t = ChatTemplate.from_tokenizer(tok)
    t.system = 'Tu es "Orion".\n你好 \\ done'
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    ref = tok.apply_chat_template([{"role": "system", "content": t.system}, *conv], tokenize=False)
    assert t.render(conv) == ref
    text, spans = t.assistant_spans(conv)
    assert text == ref and text[spans[0][0]:].startswith("hello")
    tok.chat_template = t.standalone_jinja()  # what the merged model and the GGUF carry
    assert tok.apply_chat_template(conv, tokenize=False) == ref
    given = [{"role": "system", "content": "Be brief."}, *conv]
    assert t.render(given) == tok.apply_chat_template(given, tokenize=False)


def test_old_template_json_still_loads():
    t = ChatTemplate.from_json({"name": "x", "chat_template": "{{ messages }}", "default_system": None})
    assert t.builtin_system is None and t.system is None
