"""End to end: `tunewise data prepare` on a page, spreadsheets, SQL dumps, SQLite and parquet together."""

import json
import subprocess
import sys

import pytest

import fixtures_writer as fx
from conftest import REPO, write_config
from tunewise.cli import main


@pytest.fixture
def sources(tmp_path):
    d = tmp_path / "raw"
    d.mkdir()
    return {
        "tea": fx.saved_web_page(d / "tea.html"),
        "zh": fx.gbk_csv(d / "zh.csv"),
        "en": fx.bom_csv(d / "en.csv"),
        "faq": fx.xlsx(d / "faq.xlsx"),
        "helpdesk": fx.mysql_dump(d / "helpdesk.sql"),
        "pg": fx.pg_dump(d / "pg.sql"),
        "kb": fx.sqlite_db(d / "kb.sqlite"),
        "chat": fx.parquet(d / "chat.parquet"),
    }


def _config(tmp_path, s, **data):
    return write_config(tmp_path / "prep.yaml", {
        "model": {"name_or_path": "tiny-llama"},
        "run": {"root": str(tmp_path / "runs"), "name": "prep"},
        "data": {"val_size": 0.1, "max_length": 256, **data, "datasets": [
            {"path": str(s["tea"]), "options": {"selectors": {"item": "div.qa", "prompt": ".q", "response": ".a"}},
             "system": "[task: tea]"},
            str(s["zh"]),  # 问题/答案 columns are recognised without a mapping
            {"path": str(s["en"]), "columns": {"prompt": "question", "response": "answer"}},
            {"path": str(s["faq"]), "columns": {"prompt": "Frage", "response": "Antwort"}},
            {"path": str(s["helpdesk"]), "options": {"table": "tickets"}},
            str(s["pg"]),
            {"path": str(s["kb"]), "options": {"query": "SELECT q AS prompt, a AS response FROM faq WHERE published = 1"}},
            str(s["chat"]),
        ]}})


def _jsonl(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_prepare_every_source_type_through_the_cli(tmp_path, sources, tiny_model_dirs, capsys):
    assert main(["data", "prepare", str(_config(tmp_path, sources, strict=False))]) == 0
    err = capsys.readouterr().err
    d = tmp_path / "runs" / "prep" / "data"
    stats = json.loads((d / "stats.json").read_text(encoding="utf-8"))
    per = stats["datasets"]
    assert {k: v["rows_read"] for k, v in per.items()} == {
        "tea": 3, "zh": 3, "en": 5, "faq": 3, "helpdesk": 5, "pg": 6, "kb": 3, "chat": 6}
    assert per["en"]["bad_rows"] == 1 and per["en"]["records"] == 4
    # kb repeats en's three questions and chat repeats en's and zh's: exact duplicates across datasets
    assert per["kb"]["kept"] == 0 and per["chat"]["kept"] == 0 and per["kb"]["train"] == 0
    assert per["pg"]["dropped"] == 1 and per["tea"]["kept"] == 3
    assert [s["step"] for s in stats["steps"]] == ["read", "unicode", "markup", "ai_phrases", "empty", "length",
                                                    "dedup_exact", "dedup_near", "leakage", "mix"]
    counts = {s["step"]: (s["before"], s["after"]) for s in stats["steps"]}
    assert counts["read"] == (34, 33) and counts["empty"] == (33, 32) and counts["dedup_exact"][0] - counts["dedup_exact"][1] == 9
    assert sum(v["train"] for v in per.values()) == stats["num_train"]
    assert abs(sum(v["share"] for v in per.values()) - 1) < 0.01
    assert stats["tokens"]["train"]["supervised_tokens"] > 0
    assert sum(stats["length_histogram"]["counts"]) == stats["tokens"]["train"]["examples"]
    assert (d / "lengths.png").read_bytes()[:4] == b"\x89PNG"

    dropped = _jsonl(d / "dropped.jsonl")
    assert len(dropped) == stats["num_dropped"]
    by_where = {x["where"]: x for x in dropped}
    bad = by_where[f"{sources['en']}:row 5"]
    assert bad["step"] == "read" and bad["source"] == "en" and "expected 2 fields, saw 3" in bad["reason"]
    dup = by_where[f"{sources['kb']} row 1"]
    assert dup["step"] == "dedup_exact" and f"{sources['en']}:row 2" in dup["reason"]
    unanswered = next(x for x in dropped if x["step"] == "empty")
    assert unanswered["where"].startswith(f"{sources['pg']}:") and unanswered["record"]["messages"][0]["content"] == "Unanswered question"

    records = _jsonl(d / "train.jsonl") + _jsonl(d / "val.jsonl")
    tea = [r for r in records if r["source"] == "tea"]
    assert tea and all(r["messages"][0] == {"role": "system", "content": "[task: tea]"} for r in tea)
    answers = {r["messages"][-1]["content"] for r in records}
    assert "Use C:\\Users\\you\\Downloads\\" in answers and "北京是中华人民共和国的首都。" in answers and "42" in answers
    assert "tea" in err and "helpdesk" in err and "dropped.jsonl" in err


def test_strict_stops_at_the_malformed_row_with_a_fix(tmp_path, sources, tiny_model_dirs, capsys):
    cfg = _config(tmp_path, sources)  # data.strict defaults to true
    assert main(["data", "prepare", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{sources['en']}:row 5: malformed CSV row" in err and "fix:" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "prep" / "data" / "train.jsonl").exists()  # nothing half-written
    lenient = _config(tmp_path, sources, strict=False)
    assert main(["data", "prepare", str(lenient), "--strict"]) == 2
    assert f"{sources['en']}:row 5: malformed CSV row" in capsys.readouterr().err
    # --no-strict skips the bad row and lists it, with the file and row, in dropped.jsonl
    assert main(["data", "prepare", str(cfg), "--no-strict"]) == 0
    dropped = (tmp_path / "runs" / "prep" / "data" / "dropped.jsonl").read_text()
    assert "row 5" in dropped


def test_unknown_reader_in_config_lists_the_readers(tmp_path, sources, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"model": {"name_or_path": "tiny-llama"},
                                             "data": {"datasets": [{"path": str(sources["zh"]), "reader": "xls"}]}})
    assert main(["data", "prepare", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown reader 'xls'" in err and "csv, excel, html, json, jsonl, parquet, sql, sqlite, text, tsv" in err


def _bench(*args):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "csv_stream.py"), *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_csv_stream_benchmark_runs_small(tmp_path):
    res = _bench("--size-mb", "0.3")  # the whole `tunewise data prepare`
    assert res["ok"] and res["mode"] == "prepare" and res["rows"] == res["generated_rows"] > 1000 and res["bad_rows"] == 0
    assert 0 < res["peak_rss_mb"] < res["limit_mb"]
    gen, drops = res["generated"], res["dropped_by_step"]
    assert drops["dedup_exact"] >= gen["exact_repeats"] * 0.9 and drops["dedup_near"] >= gen["near_repeats"] * 0.5
    assert res["kept"] == res["rows"] - sum(drops.values()) + drops["leakage"]
    assert res["kept"] - drops["leakage"] == res["num_train"] + res["num_val"]
    res = _bench("--size-mb", "1", "--reader-only")
    assert res["ok"] and res["mode"] == "reader-only" and res["rows"] == res["generated_rows"] > 1000 and res["bad_rows"] == 0
