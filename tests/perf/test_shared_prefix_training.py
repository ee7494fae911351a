"""Training: examples of a batch that begin alike (a system prompt, tool definitions) share that beginning in one row
(train/collate.SharedPrefix): computed once, attended to by every example at the positions each has alone. The loss
and gradients are those of the same examples padded, on every tiny architecture, sliding-window layers included;
a model that would read such a row differently is found at the start and never given one."""

import pytest
import torch

from tunewise.templates import choose_template
from tunewise.templates.encode import IGNORE
from tunewise.train.collate import (
    PackCollator,
    PackingCost,
    PadCollator,
    SharedPrefix,
    common_unsupervised_prefix,
    shared_prefix_is_exact,
)
from tunewise.train.trainer import supervised_loss

SYSTEM = ("You are the assistant of Bluefield Labs. Answer briefly, in the language of the question, and call the "
          "weather tool whenever the user asks about the weather in any city of the world.")


def _records(n: int = 4) -> list[dict]:
    asks = ["What is the capital of France?", "Name three primary colours.", "How many legs has a spider?",
            "Translate 'good morning' into German.", "What is two plus five?", "Who wrote Hamlet?"]
    says = ["Paris is the capital of France, and its largest city as well.", "Red, yellow and blue.",
            "A spider has eight legs, unlike insects, which have six.", "Guten Morgen.", "Seven.",
            "William Shakespeare wrote Hamlet around the year 1600."]
    return [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": asks[i]},
                          {"role": "assistant", "content": says[i] + " " + says[(i + 1) % 6]}]} for i in range(n)]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2", "tiny-gemma3"])
def setup(request, tiny_model_dirs):
    from conftest import tiny_features

    return (request.param, *tiny_features(tiny_model_dirs[request.param], _records(), 512))


def _grads(model, batch):
    model.zero_grad()
    loss = supervised_loss(model, batch, chunk_size=16)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return float(loss), grads


def test_a_shared_row_scores_and_trains_like_the_padded_batch(setup):
    name, model, tok, feats = setup
    shared = SharedPrefix.of(model)
    assert shared is not None and shared_prefix_is_exact(model, shared)
    n = common_unsupervised_prefix(feats)
    assert n >= 16
    row = PackCollator(tok.pad_token_id, shared=shared)(feats)
    assert row["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in feats) - 3 * n)
    assert int(row["example_tokens"]) == sum(len(f["input_ids"]) for f in feats)
    if name == "tiny-gemma3":  # its sliding window (64) is shorter than the row: one mask per kind of layer
        assert set(row["attention_mask"]) == {"full_attention", "sliding_attention"}
        assert int(row["position_ids"].max()) > 64
    loss, grads = _grads(model, row)
    ref_loss, ref = _grads(model, PadCollator(tok.pad_token_id)(feats))
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for k, g in ref.items():
        torch.testing.assert_close(grads[k], g, rtol=1e-4, atol=1e-6)
    for key in ("input_ids", "labels", "position_ids"):  # rounded rows (bf16 on a CPU): the same loss
        assert PackCollator(tok.pad_token_id, round_rows=True, shared=shared)(feats)[key].shape[1] % 8 == 0
    rounded = PackCollator(tok.pad_token_id, round_rows=True, shared=shared)(feats)
    with torch.no_grad():
        assert float(supervised_loss(model, rounded)) == pytest.approx(ref_loss, rel=1e-5)


def test_a_mask_that_lets_examples_read_each_other_is_found(setup):
    _, model, _, _ = setup

    class Leaky(SharedPrefix):
        def mask(self, seg, pos):  # every token attends to every earlier one: example 2 reads example 1
            causal = torch.ones(len(seg), len(seg), dtype=torch.bool).tril_()[None, None]
            return causal if self.kinds is None else {k: causal for k in self.kinds}

    assert not shared_prefix_is_exact(model, Leaky(SharedPrefix.of(model).kinds))


def test_only_an_unscored_common_beginning_is_shared():
    ids = list(range(100, 140))
    a = {"input_ids": ids + [1, 2, 3], "labels": [IGNORE] * 41 + [2, 3]}
    b = {"input_ids": ids + [4, 5], "labels": [IGNORE] * 41 + [5]}
    assert common_unsupervised_prefix([a, b]) == 40
    scored = {"input_ids": ids + [6], "labels": [IGNORE] * 20 + ids[20:] + [6]}  # a prompt scored from token 20
    assert common_unsupervised_prefix([a, scored]) == 19  # the token after the shared part is unscored too
    assert common_unsupervised_prefix([a]) == 0
    other = {"input_ids": [7] + ids[1:] + [8], "labels": [IGNORE] * 41}
    assert common_unsupervised_prefix([a, other]) == 0
    # the cost rule: the tool-calling set's pairs (~450 of ~513 tokens alike) share; long examples of like length
    # with a short common beginning still pad (SmolLM2's costs, as in test_packing_choice.py)
    cost = PackingCost(2.0 * 106.2e6, 4.0 * 4 * 9 * 64 * 30)
    assert cost.pads_cheaper([513, 513]) and cost.shared_cheaper([513, 513], 450)
    assert not cost.shared_cheaper([505, 521], 17)


def test_training_shares_the_beginning_only_where_the_model_reads_it_exactly(tmp_path, tiny_model_dirs, monkeypatch):
    """A run on records with a long common system prompt trains on shared rows, and its losses are those of the same
    run padded; when the start-up check finds the model would read such a row differently, no row is shared."""
    import json

    from conftest import read_metrics, tiny_config, write_config

    from tunewise.cli import main
    from tunewise.train import collate

    data = tmp_path / "sys.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records(6)), encoding="utf-8")
    made = []
    real = PackCollator._shared_row
    monkeypatch.setattr(PackCollator, "_shared_row", lambda self, f, n: made.append(n) or real(self, f, n))

    def losses(name, packing):
        cfg = tiny_config(tmp_path / name, data, train={"packing": packing, "max_steps": 4, "logging_steps": 1,
                                                        "per_device_batch_size": 3, "gradient_accumulation_steps": 1,
                                                        "eval_steps": 100, "generation_check": False})
        cfg["data"]["val_size"] = 0
        assert main(["train", str(write_config(tmp_path / f"{name}.yaml", cfg))]) == 0
        return [r["loss"] for r in read_metrics(tmp_path / name / "runs" / "t") if "loss" in r]

    padded = losses("padded", False)
    assert made == []
    shared = losses("shared", True)
    assert len(made) >= 4 and min(made) >= 16
    assert shared == pytest.approx(padded, rel=2e-4)
    made.clear()
    monkeypatch.setattr(collate, "shared_prefix_is_exact", lambda model, shared, vocab_size=None: False)
    losses("refused", True)
    assert made == []


def test_evaluation_loss_shares_the_beginning_and_equals_the_padded_mean(setup, monkeypatch):
    from types import SimpleNamespace

    from tunewise.evaluate import runner
    from tunewise.templates.encode import encode_records
    from tunewise.train import collate

    name, model, tok, _ = setup
    tpl = choose_template("auto", tok, model.config.model_type)
    enc, _ = encode_records(tok, tpl, _records(6), max_length=512)
    lm = SimpleNamespace(model=model, tokenizer=tok)
    rows = []
    real = PackCollator._shared_row
    monkeypatch.setattr(PackCollator, "_shared_row", lambda self, f, n: rows.append(len(f)) or real(self, f, n))
    shared = runner.mean_loss(lm, enc, batch_size=3)
    assert rows and set(rows) == {3}  # a batch shares its beginning where that costs less than padding it
    seen = list(rows)
    monkeypatch.setattr(collate, "shared_or_padded", lambda model, pad_id: PadCollator(pad_id))
    assert shared == pytest.approx(runner.mean_loss(lm, enc, batch_size=3), rel=1e-5)
    assert rows == seen
