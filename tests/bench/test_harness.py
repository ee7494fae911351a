"""The benchmark harness works end to end (quick mode, tiny model); no timing is asserted."""

import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.xdist_group("heavy")
def test_bench_quick_runs_every_peer(tmp_path, tiny_model_dirs):
    out = tmp_path / "RESULTS.md"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    md = out.read_text()
    for peer in ("tunewise", "tunewise_nopack", "tunewise_bf16base", "trl_default", "trl_best", "plain"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {peer} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) > 0 and float(cells[4]) > 0  # tokens/s and val loss measured
    assert "measured matmul" in md
    assert "instruction data of realistic shape" in md  # the headline workload, not the repeated demo set


def test_headline_workload_has_realistic_shape(tiny_model_dirs):
    """bench/workload.py: lengths and supervised share like public alpaca-style data (mean ~180 tokens, long tail,
    most tokens supervised), deterministic per seed, both languages, no record repeated beyond the short set."""
    import statistics

    from bench.workload import instruction_records
    from tunewise.models.load import load_tokenizer
    from tunewise.templates import choose_template
    from tunewise.templates.encode import encode_records

    recs = instruction_records(200, seed=0)
    assert recs == instruction_records(200, seed=0) and recs != instruction_records(200, seed=1)
    tok = load_tokenizer(tiny_model_dirs["tiny-llama"])
    tpl = choose_template("auto", tok, "llama")
    enc, st = encode_records(tok, tpl, recs, max_length=4096)
    lengths = [len(e.input_ids) for e in enc]
    assert len(enc) == 200 and st.supervised_tokens / st.total_tokens > 0.7
    assert max(lengths) > 3 * statistics.median(sorted(lengths)[:60])  # a long tail beside short answers
    zh = sum(any("\u4e00" <= c <= "\u9fff" for c in r["messages"][1]["content"]) for r in recs)
    assert 0.2 < zh / len(recs) < 0.8


@pytest.mark.parametrize("best,bf16,pays,expected", [
    (False, True, True, None),    # trl_default: TRL's own default precision (SFTConfig: bf16 autocast)
    (False, False, True, False),  # trl_fp32
    (True, True, True, True),     # trl_best where this CPU multiplies bf16 fast
    (True, True, False, False),   # trl_best where it does not: fp32, not TRL's slow bf16 default
    (True, False, True, False),   # trl_best_fp32
])
def test_trl_peers_set_the_precision_they_are_named_for(tiny_model_dirs, monkeypatch, best, bf16, pays, expected):
    import trl

    from bench import peers

    seen = {}

    class Stop(Exception):
        pass

    def trainer(**kw):
        seen["bf16"] = kw["args"].bf16
        raise Stop

    monkeypatch.setattr(trl, "SFTTrainer", trainer)
    monkeypatch.setattr(peers, "bf16_pays", lambda model: pays)
    monkeypatch.setattr(peers, "_load", lambda spec: (tiny_model_dirs["tiny-llama"], _tokenizer(tiny_model_dirs)))
    monkeypatch.setattr(peers, "_base_model", lambda spec, path: None)
    monkeypatch.setattr(peers, "_method", lambda spec: "lora")
    from tunewise.templates import choose_template

    spec = {"template": choose_template("auto", _tokenizer(tiny_model_dirs), "llama").to_dict(), "max_length": 64,
            "batch_size": 2, "epochs": 1, "lr": 1e-4, "seed": 0, "train_tokens_per_epoch": 100}
    rec = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    with pytest.raises(Stop):
        peers.run_trl(spec, tiny_model_dirs["tiny-llama"].parent / "trl-out", [rec], [], best=best, bf16=bf16)
    from trl import SFTConfig

    assert seen["bf16"] == (SFTConfig(output_dir="x", use_cpu=True).bf16 if expected is None else expected)
    if expected is None:
        assert seen["bf16"] is True  # TRL's default really is bf16 (the reason the choice is made explicitly)


def _tokenizer(dirs):
    from tunewise.models.load import load_tokenizer

    return load_tokenizer(dirs["tiny-llama"])


def test_system_workload_is_the_instruction_mix_behind_one_system_prompt():
    from bench.workload import SYSTEM_PROMPT, instruction_records, system_records

    plain, sys_recs = instruction_records(30, seed=2), system_records(30, seed=2)
    assert [r["messages"][1:] for r in sys_recs] == [r["messages"] for r in plain]
    assert {r["messages"][0]["content"] for r in sys_recs} == {SYSTEM_PROMPT}
    assert all(r["messages"][0]["role"] == "system" for r in sys_recs)
