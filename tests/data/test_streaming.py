"""The streaming data stage: compact dedup indexes, lazy `where` look-ups, chunk-size independence, atomic output."""

import json
import random

import numpy as np
import pytest

from conftest import write_config
from tunewise.config import load_config
from tunewise.data.clean import CleanConfig
from tunewise.data.dedup import ABSENT, BandHasher, BandIndex, SortedRuns
from tunewise.data.prepare import prepare
from tunewise.errors import DataError

EN = "the quick brown fox jumps over a lazy dog while seven wizards quietly brew potions near an old river".split()
ZH = list("今天天气很好我们一起去公园散步然后在湖边喝咖啡聊天机器学习模型需要大量数据来训练质量决定效果")


def _texts(n=80, seed=0):
    """Mixed English/Chinese sentences, with every fourth one a one-character edit of an earlier one."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 4 == 3:
            base = out[rng.randrange(len(out))]
            k = rng.randrange(len(base))
            out.append(base[:k] + ("！" if "\u4e00" <= base[k] <= "\u9fff" else "#") + base[k + 1:])
        elif i % 2:
            out.append("".join(rng.choice(ZH) for _ in range(80)))
        else:
            out.append(" ".join(rng.choice(EN) for _ in range(30)))
    return out


def test_compact_lsh_finds_what_datasketch_minhashlsh_finds():
    from datasketch import MinHashLSH

    cfg = CleanConfig()
    texts = _texts()
    hasher = BandHasher(cfg.near_threshold, cfg.num_perm, cfg.shingle_size)
    sigs = hasher.signatures(texts)
    lsh, expected = MinHashLSH(threshold=cfg.near_threshold, num_perm=cfg.num_perm), []
    from datasketch import MinHash

    for i, sig in enumerate(sigs):
        m = MinHash(num_perm=cfg.num_perm, seed=1, hashvalues=sig.astype(np.uint32), scheme="affine32")
        hits = lsh.query(m)
        expected.append(int(sorted(hits)[0]) if hits else ABSENT)
        if not hits:
            lsh.insert(f"{i:06d}", m)
    assert sum(e != ABSENT for e in expected) >= 10  # the set does have near duplicates

    index, got = BandIndex(hasher.bands, np.uint32), []
    keys = hasher.band_keys(texts)
    for start in range(0, len(texts), 7):  # small chunks: collisions inside a chunk and across the LSM runs
        part = keys[start:start + 7]
        indexed, earlier = index.claim(part)
        got += [int(a) if a != ABSENT else (start + int(b) if b != ABSENT else ABSENT) for a, b in zip(indexed, earlier)]
        kept = (indexed == ABSENT) & (earlier == ABSENT)
        index.add(part[kept], np.arange(start, start + len(part))[kept])
    assert got == expected


def test_vectorised_signatures_are_datasketchs_value_for_value():
    """BandHasher computes every shingle's crc32 and the affine32 permutations in numpy, for a chunk at once; the
    values are datasketch's MinHash over the shingle set: 1- to 4-byte UTF-8, texts shorter than a shingle, empty."""
    import zlib

    from datasketch import MinHash

    from tunewise.data.dedup import shingles

    rng = random.Random(5)
    alphabet = "abcXYZ é ü ß 中文字符测试 ，。？ 🙂🚀𝔘 \t\n İ ﬁ Ａ１ \u200b"
    texts = ["", " ", "a", "abcd", "abcde", "abcdef", "🙂", "🙂🚀𝔘𝔫𝔦", "İstanbul", "ﬁne", "ＡＢＣＤＥＦ", *_texts(40)]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(300)]
    for k in (5, 1, 3):
        hasher = BandHasher(0.85, 128, k)
        hasher.BLOCK = 64  # many blocks, and texts longer than one
        got = hasher.signatures(texts)
        grams = ([g.encode("utf-8") for g in shingles(t, k)] for t in texts)
        want = [m.hashvalues for m in MinHash.generator(grams, num_perm=128, seed=1, hashfunc=zlib.crc32)]
        assert got.dtype == np.uint64 and np.array_equal(got, np.array(want, dtype=np.uint64)), k


def test_sorted_runs_merge_and_answer_the_first_value():
    runs, truth = SortedRuns(np.int64), {}
    rng = np.random.default_rng(0)
    for step in range(300):
        keys = rng.integers(0, 500, size=5, dtype=np.uint64)
        vals = np.arange(step * 5, step * 5 + 5)
        runs.add(keys, vals)
        for k, v in zip(keys.tolist(), vals.tolist()):
            truth.setdefault(k, v)
    assert runs.runs <= 12 and len(runs) == 1500  # merged like a binary counter
    probe = np.arange(0, 600, dtype=np.uint64)
    assert runs.lookup(probe).tolist() == [truth.get(k, ABSENT) for k in probe.tolist()]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(tmp_path, datasets, **data):
    return load_config(write_config(tmp_path / "c.yaml", {
        "model": {"name_or_path": "tiny-llama"}, "train": {"seed": 3}, "data": {"datasets": datasets, **data}}))


def _rows(n=240):
    texts = _texts(n, seed=1)
    rows = [{"instruction": "write a sentence", "output": t} for t in texts]
    rows += rows[:: 9]  # exact duplicates
    rows.append({"instruction": "x", "output": "As an AI language model, I cannot."})
    return rows


def _outputs(run):
    d = run / "data"
    stats = json.loads((d / "stats.json").read_text(encoding="utf-8"))
    return [(d / f).read_text(encoding="utf-8") for f in ("train.jsonl", "val.jsonl", "dropped.jsonl")], stats


def test_tiny_chunks_give_the_same_result_as_the_default(tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", _rows())
    cfg = _cfg(tmp_path, [str(data)], val_size=0.2)
    prepare(cfg, tmp_path / "a")
    prepare(cfg, tmp_path / "b", chunk_size=3)
    (a, sa), (b, sb) = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    assert a == b and sa == sb
    assert sa["dropped_by_step"]["dedup_exact"] >= 20 and sa["dropped_by_step"]["dedup_near"] >= 10
    assert not list((tmp_path / "b" / "data").glob(".*"))  # spill and temporary files are gone


def test_duplicate_reasons_name_the_earlier_record(tmp_path):
    a = "Paris is the capital of France and its largest city by far."
    near = a.replace("far.", "far!")
    data = _jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "output": a}, {"instruction": "q", "output": near},
                                         {"instruction": "other", "output": "Seven is prime."},
                                         {"instruction": "q", "output": near}, {"instruction": "q", "output": a}])
    p = prepare(_cfg(tmp_path, [str(data)], val_size=0), tmp_path / "run", chunk_size=1)  # every look-up crosses chunks
    by = {d["where"]: d for d in p.dropped}
    assert by[f"{data}:2"]["step"] == "dedup_near" and by[f"{data}:2"]["reason"] == f"near duplicate of {data}:1"
    # line 4 repeats line 2, which was itself dropped: the earlier record is found in dropped.jsonl
    assert by[f"{data}:4"]["reason"] == f"exact duplicate of {data}:2"
    assert by[f"{data}:5"]["reason"] == f"exact duplicate of {data}:1"
    assert len(p.train) == 2


def test_leakage_against_separate_validation_data(tmp_path):
    train = _jsonl(tmp_path / "t.jsonl", [{"instruction": "capital?", "output": "The capital of France is Paris, a large city."},
                                          {"instruction": "prime?", "output": "Seven is a prime number."}])
    val = _jsonl(tmp_path / "v.jsonl", [{"instruction": "capital?", "output": "The capital of France is Paris, a large city!"},
                                        {"instruction": "colour?", "output": "The sky is blue on a clear day."}])
    p = prepare(_cfg(tmp_path, [str(train)], val_datasets=[str(val)]), None, chunk_size=1)
    assert [r["where"] for r in p.val] == [f"{val}:2"]
    leak = next(d for d in p.dropped if d["step"] == "leakage")
    assert leak["where"] == f"{val}:1" and f"{train}:1" in leak["reason"]
    assert {s["step"]: (s["before"], s["after"]) for s in p.stats["steps"]}["leakage"] == (2, 1)


def test_error_mid_stream_leaves_no_half_written_output(tmp_path):
    rows = _rows(120)
    good = _jsonl(tmp_path / "d.jsonl", rows)
    cfg = _cfg(tmp_path, [str(good)])
    run = tmp_path / "run"
    prepare(cfg, run, chunk_size=4)
    before, _ = _outputs(run)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text(encoding="utf-8") + '{"instruction": "broken", \n', encoding="utf-8")
    with pytest.raises(DataError, match=f"{bad}:{len(rows) + 1}"):
        prepare(_cfg(tmp_path, [str(bad)]), run, chunk_size=4)
    after, _ = _outputs(run)
    assert after == before  # the earlier result is untouched, nothing half-written replaced it
    assert sorted(p.name for p in (run / "data").iterdir()) == ["dropped.jsonl", "stats.json", "train.jsonl", "val.jsonl"]
    fresh = tmp_path / "fresh"
    with pytest.raises(DataError, match=f"{bad}:{len(rows) + 1}"):
        prepare(_cfg(tmp_path, [str(bad)]), fresh, chunk_size=4)
    assert list(fresh.iterdir()) == []  # no data/, and no temporary left behind


def test_token_stats_in_chunks_match_one_pass(tmp_path, tiny_model_dirs):
    from tunewise.data.commands import token_stats
    from tunewise.train.data import encode_for_training
    from tunewise.models.load import tokenizer_and_template

    data = _jsonl(tmp_path / "d.jsonl", _rows(60))
    cfg = _cfg(tmp_path, [str(data)], max_length=24)  # some examples are truncated
    p = prepare(cfg, None)
    _, tok, tpl = tokenizer_and_template(cfg)
    _, _, whole = encode_for_training(cfg, tok, tpl, p)
    chunked, hist = token_stats(cfg, tok, tpl, p.records("train"), chunk_size=7)
    assert chunked == whole["train"] and whole["train"]["truncated_examples"] > 0
    assert int(hist.sum()) == whole["train"]["examples"] - whole["train"]["dropped_no_labels"]


@pytest.mark.parametrize("workers", [1, 2])
def test_strict_mode_raises_the_first_error_in_file_order_with_any_number_of_workers(tmp_path, workers):
    """Rows are converted on the workers, while this process reads on: an error it finds later in the stream (an
    empty second file) must not overtake one a worker finds earlier (a record without its answer, row 150)."""
    rows = [{"instruction": f"question {i}", "output": f"answer number {i} " * 3} for i in range(300)]
    rows[149] = {"instruction": "no answer"}
    first = _jsonl(tmp_path / "d.jsonl", rows)
    empty = tmp_path / "e.jsonl"
    empty.write_text("", encoding="utf-8")
    cfg = _cfg(tmp_path, [str(first), str(empty)], num_workers=workers)
    with pytest.raises(DataError, match=f"{first}:150"):
        prepare(cfg, None, chunk_size=8)


def test_sampled_token_stats_say_so_and_stay_close(tmp_path, tiny_model_dirs):
    """data.token_stats_sample counts a seeded sample and scales it: the examples are all counted, the token sums
    land near the exact ones, and stats.json says it is a sample; a sample as large as the data is exact."""
    from tunewise.data.commands import prepare_command

    data = _jsonl(tmp_path / "d.jsonl", _rows(400))

    def tokens(name: str, **extra) -> dict:
        cfg = load_config(write_config(tmp_path / f"{name}.yaml", {
            "model": {"name_or_path": "tiny-llama"}, "run": {"root": str(tmp_path / "runs"), "name": name},
            "data": {"datasets": [str(data)], "val_size": 0.1, **extra}}))
        return json.loads((prepare_command(cfg) / "stats.json").read_text(encoding="utf-8"))["tokens"]["train"]

    exact, sampled, whole = tokens("exact"), tokens("sampled", token_stats_sample=100), tokens("whole", token_stats_sample=10**6)
    assert whole == exact and "sampled" not in exact
    # train holds 90% of the records, so 90 of the 100 (val the other 10)
    assert sampled["sampled"] == {"records": 90, "of": exact["examples"]} and sampled["examples"] == exact["examples"]
    for key in ("total_tokens", "supervised_tokens"):
        assert abs(sampled[key] - exact[key]) < 0.1 * exact[key], key
