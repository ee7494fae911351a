"""models/generation: prompts that begin alike have that beginning computed once, and every answer is the one the
prompt gets alone (greedy), in the caller's order."""

import pytest
import torch

import tunewise.models.generation as g
from tunewise.models.generation import SHARED_PREFIX_MIN, generate_ids, shared_prefix

SYSTEM = [2] + [40 + (i * 7) % 50 for i in range(30)]  # a 31-token "system prompt" every prompt begins with
OWN = [[5, 9, 14], [7, 7, 30, 31, 40, 41, 9], [12], [60, 61, 62, 63, 64], [33, 34]]


def _model(tiny_model_dirs, name):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dirs[name]).eval()


def _alone(model, prompts, new=10):
    """Each prompt on its own: no padding, nothing shared."""
    return [generate_ids(model, [p], stop_ids=[1], pad_id=0, max_new_tokens=new, batch_size=1)[0] for p in prompts]


def _prefill_lengths(model):
    """The (rows, tokens) of every forward call that feeds more than one token."""
    seen = []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.register_forward_pre_hook(lambda m, a, k: seen.append(tuple(k["input_ids"].shape))
                                   if k.get("input_ids") is not None and k["input_ids"].shape[1] > 1 else None,
                                   with_kwargs=True)
    return seen


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen2", "tiny-gemma3"])
def test_shared_beginning_is_computed_once_and_answers_are_unchanged(tiny_model_dirs, name):
    model = _model(tiny_model_dirs, name)
    prompts = [SYSTEM + own for own in OWN]
    alone = _alone(model, prompts)
    seen = _prefill_lengths(model)
    batched = generate_ids(model, prompts, stop_ids=[1], pad_id=0, max_new_tokens=10, batch_size=8)
    assert batched == alone and any(len(ids) for ids, _ in batched)
    # one row of the shared 31 tokens, then the 5 rows' own parts (the longest 7 tokens), not 5 x 38 tokens
    assert seen == [(1, len(SYSTEM)), (len(OWN), max(len(o) for o in OWN))]


def test_answers_come_back_in_the_callers_order_across_batches(tiny_model_dirs):
    model = _model(tiny_model_dirs, "tiny-llama")
    prompts = [SYSTEM + own for own in OWN] + [[2, 8, 9], [2, 8, 9, 10, 11, 12, 13]]  # two that share nothing
    got = generate_ids(model, prompts, stop_ids=[1], pad_id=0, max_new_tokens=8, batch_size=3)
    assert got == _alone(model, prompts, new=8)


def test_a_lora_model_shares_too(tiny_model_dirs):
    from peft import get_peft_model

    from tunewise.config.schema import MethodConfig
    from tunewise.methods.lora import lora_config

    torch.manual_seed(0)
    model = get_peft_model(_model(tiny_model_dirs, "tiny-qwen2"), lora_config(MethodConfig(lora_dropout=0.0), []))
    for n, p in model.named_parameters():  # a trained-looking adapter: B is zero at the start
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.2)
    model.eval()
    prompts = [SYSTEM + own for own in OWN]
    alone = _alone(model, prompts)
    seen = _prefill_lengths(model)
    assert generate_ids(model, prompts, stop_ids=[1], pad_id=0, max_new_tokens=10, batch_size=8) == alone
    assert seen[0] == (1, len(SYSTEM))


def test_when_nothing_is_shared(tiny_model_dirs):
    llama, gemma = _model(tiny_model_dirs, "tiny-llama"), _model(tiny_model_dirs, "tiny-gemma3")
    prompts = [SYSTEM + own for own in OWN]
    assert shared_prefix(llama, prompts, 10) == len(SYSTEM)
    assert shared_prefix(llama, prompts[:1], 10) == 0  # one prompt: nothing to share with
    short = [SYSTEM[:SHARED_PREFIX_MIN - 1] + own for own in OWN]
    assert shared_prefix(llama, short, 10) == 0  # too little in common to be worth a separate pass
    same = [SYSTEM, SYSTEM]
    assert shared_prefix(llama, same, 10) == len(SYSTEM) - 1  # each row keeps a token of its own to start from
    # tiny-gemma3 has a 64-token sliding window: prompt + answer within it shares, beyond it does not
    assert shared_prefix(gemma, prompts, 64 - max(len(p) for p in prompts)) == len(SYSTEM)
    assert shared_prefix(gemma, prompts, 65 - max(len(p) for p in prompts)) == 0


def test_prompt_learning_adapters_do_not_share(tiny_model_dirs):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    model = get_peft_model(_model(tiny_model_dirs, "tiny-llama"),
                           PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4))
    assert shared_prefix(model, [SYSTEM + own for own in OWN], 10) == 0
    model.eval()
    got = generate_ids(model, [SYSTEM + own for own in OWN[:2]], stop_ids=[1], pad_id=0, max_new_tokens=4)
    assert len(got) == 2


def test_a_streamer_keeps_the_plain_path(tiny_model_dirs, monkeypatch):
    model = _model(tiny_model_dirs, "tiny-llama")
    called = []
    monkeypatch.setattr(g, "shared_prefix", lambda *a: called.append(a) or 0)

    class Sink:
        def put(self, value):
            pass

        def end(self):
            pass

    generate_ids(model, [SYSTEM + own for own in OWN[:2]], stop_ids=[1], pad_id=0, max_new_tokens=3, streamer=Sink())
    assert called == []


def test_beyond_a_sliding_window_answers_are_still_the_ones_alone(tiny_model_dirs):
    """Past tiny-gemma3's 64-token window the padding in the middle of a shared row would take the place of real
    tokens in the window, so such a batch is not shared, and answers stay the ones each prompt gets alone."""
    model = _model(tiny_model_dirs, "tiny-gemma3")
    prompts = [SYSTEM + [50 + (i * 3 + k) % 40 for k in range(n)] for i, n in enumerate((3, 12, 26))]
    alone = _alone(model, prompts, new=30)
    assert generate_ids(model, prompts, stop_ids=[1], pad_id=0, max_new_tokens=30, batch_size=8) == alone


def test_eval_loss_batches_like_lengths_and_keeps_the_mean(tiny_model_dirs, monkeypatch):
    """evaluate.mean_loss sorts examples by length before batching: fewer padded positions, the same mean."""
    from types import SimpleNamespace

    from tunewise.evaluate import runner
    from tunewise.models.load import load_tokenizer
    from tunewise.train.collate import PadCollator

    model = _model(tiny_model_dirs, "tiny-llama")
    lm = SimpleNamespace(model=model, tokenizer=load_tokenizer(tiny_model_dirs["tiny-llama"]))
    lengths = [6, 40, 7, 38, 5, 41, 8, 36]  # long and short alternate, as a shuffled set does
    encoded = [SimpleNamespace(input_ids=[2] + [10 + (i + k) % 60 for k in range(n - 1)],
                               labels=[-100] * (n // 2) + [10 + (i + k) % 60 for k in range(n // 2, n)])
               for i, n in enumerate(lengths)]
    padded = []
    plain = PadCollator.__call__
    monkeypatch.setattr(PadCollator, "__call__", lambda self, f: padded.append(
        sum(max(len(x["input_ids"]) for x in f) - len(x["input_ids"]) for x in f)) or plain(self, f))
    one_by_one = runner.mean_loss(lm, encoded, batch_size=1)
    padded.clear()
    batched = runner.mean_loss(lm, encoded, batch_size=4)
    assert batched == pytest.approx(one_by_one, rel=1e-5)
    assert sum(padded) == (8 - 5 + 8 - 6 + 8 - 7) + (41 - 36 + 41 - 38 + 41 - 40)  # in the given order: 143
