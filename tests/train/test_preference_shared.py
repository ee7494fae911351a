"""Preference pairs in one shared row (train/preference.PreferenceCollator with a SharedPrefix): the beginning every
prompt has in common once, each pair's prompt once, its chosen and rejected answers attending to it. Every row's
log-probability and the loss's gradients are those of the padded batch."""

import pytest
import torch

from test_preference import _cfg, _pairs, _setup
from tunewise.train.collate import PackingCost, SharedPrefix
from tunewise.train.preference import PreferenceCollator, preference_loss, sequence_logps

SYSTEM = "You are a travel guide. Answer in one friendly sentence and never refuse a question about a city."


def _with_system(pairs):
    return [{**p, "messages": [{"role": "system", "content": SYSTEM}, *p["messages"]]} for p in pairs]


@pytest.fixture
def pairs_setup(tmp_path, tiny_model_dirs):
    cfg = _cfg(tmp_path, "dpo")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_length": 128})})
    model, tok, _, train_ds, _ = _setup(cfg, tiny_model_dirs, _with_system(_pairs(6)), [])
    return cfg, model, tok, [train_ds[i] for i in range(4)]


def test_a_shared_row_gives_every_pair_the_padded_log_probabilities_and_gradients(pairs_setup):
    cfg, model, tok, feats = pairs_setup
    model.eval()  # no dropout: the two forms see the same weights
    shared = SharedPrefix.of(model)
    padded = PreferenceCollator(tok.pad_token_id or 0)(feats)
    row = PreferenceCollator(tok.pad_token_id or 0, shared=shared, cost=PackingCost.of(model))(feats)
    assert row["input_ids"].shape[0] == 1 and int(row["row_count"]) == 8
    held = int(padded["attention_mask"].sum())
    assert int(row["example_tokens"]) == held and row["input_ids"].shape[1] < 0.6 * held  # prompts held once

    def run(batch):
        model.zero_grad()
        logp, n = sequence_logps(model, batch, chunk_size=8)
        loss, _ = preference_loss("dpo", cfg.preference, logp, n, logp.detach() - 0.5)
        loss.backward()
        return logp.detach(), n, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    lp_row, n_row, g_row = run(row)
    lp_pad, n_pad, g_pad = run(padded)
    assert torch.equal(n_row, n_pad)
    torch.testing.assert_close(lp_row, lp_pad, rtol=1e-5, atol=1e-4)
    assert g_pad
    for k, g in g_pad.items():
        torch.testing.assert_close(g_row[k], g, rtol=1e-4, atol=1e-6)
    model.zero_grad()


def test_dpo_runs_share_their_prompts_and_kto_and_unpacked_runs_do_not(tmp_path, tiny_model_dirs):
    from tunewise.train.assemble import build_trainer

    cfg = _cfg(tmp_path, "dpo")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_length": 128})})
    model, tok, _, train_ds, _ = _setup(cfg, tiny_model_dirs, _with_system(_pairs(6)), [])

    def collator(c):
        trainer, _ = build_trainer(c, model, train_ds, None, out=tmp_path / "out", pad_id=tok.pad_token_id or 0,
                                   report=False, reference="precomputed")
        return trainer.data_collator

    assert collator(cfg).shared is not None
    assert collator(cfg.model_copy(update={"train": cfg.train.model_copy(update={"packing": False})})).shared is None


def test_evaluation_ranks_held_out_pairs_as_it_does_padded(tmp_path, tiny_model_dirs, monkeypatch):
    from types import SimpleNamespace

    from tunewise.evaluate import runner
    from tunewise.train import collate

    cfg = _cfg(tmp_path, "dpo")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_length": 128})})
    model, tok, template, _, _ = _setup(cfg, tiny_model_dirs, _with_system(_pairs(6)), [])
    model.eval()
    lm = SimpleNamespace(model=model, tokenizer=tok, template=template)
    held = _with_system(_pairs(5, seed=3))
    rows = []
    real = PreferenceCollator._shared_row
    monkeypatch.setattr(PreferenceCollator, "_shared_row", lambda self, f: rows.append(len(f)) or real(self, f))
    shared = runner.pair_scores(lm, held, cfg)
    assert rows and shared["pairs"] == 5
    monkeypatch.setattr(collate, "shared_for", lambda model: None)
    padded = runner.pair_scores(lm, held, cfg)
    assert shared["pair_accuracy"] == padded["pair_accuracy"]
    assert shared["pair_margin_per_token"] == pytest.approx(padded["pair_margin_per_token"], rel=1e-4, abs=1e-6)
