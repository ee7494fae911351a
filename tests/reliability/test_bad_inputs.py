"""Every bad input answered: a table of malformed and hostile inputs, each run through the CLI.

Each case asserts the exit status, that no traceback is printed, that the message names where the problem
is (file and line/row/record, key, or run folder), and that nothing half-written remains (no temporary
files, no output of the failed command). The cases build their own files; run-directory cases damage a
copy of one trained tiny run.
"""

from __future__ import annotations

import io
import json
import shutil
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import tiny_config, train_demo_run

pytestmark = pytest.mark.xdist_group("reliability")

QA = [{"instruction": f"question {i}?", "output": f"answer {i}."} for i in range(8)]
# Outputs a successful command writes: a failed one must neither create nor change any of them.
OUTPUTS = {"train.jsonl", "val.jsonl", "stats.json", "adapter_model.safetensors", "model.safetensors", "verify.json",
           "Modelfile", "model.gguf", "train_summary.json", "metrics.jsonl", "tunewise_checkpoint.json", "report.md"}


@dataclass
class Ctx:
    tmp: Path
    trained: Path  # a trained tiny run (module-scoped, never modified: cases copy it)

    def file(self, name: str, content: str | bytes) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return p

    def jsonl(self, name: str, rows: list) -> Path:
        return self.file(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def config(self, data: Path | None = None, dataset: dict | None = None, **sections) -> Path:
        cfg = tiny_config(self.tmp, data or self.jsonl("qa.jsonl", QA))
        if dataset:
            cfg["data"]["datasets"] = [{"path": str(data), **dataset}]
        for k, v in sections.items():
            cfg.setdefault(k, {}).update(v)
        p = self.tmp / "c.yaml"
        p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        return p

    def run(self) -> Path:
        dst = self.tmp / "runs" / "copy"
        shutil.copytree(self.trained, dst)
        return dst

    def edit_run_config(self, run: Path, section: str, **values) -> None:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg[section].update(values)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")

    def remote_code_model(self) -> Path:
        """A copy of tiny-llama whose config.json asks to run a Python file that leaves a marker when run."""
        from tunewise.models.cache import home

        src, dst = home() / "models" / "tiny-llama", self.tmp / "remote-model"
        shutil.copytree(src, dst)
        conf = json.loads((dst / "config.json").read_text())
        conf.update(model_type="tw_remote", auto_map={"AutoConfig": "configuration_tw.TwConfig"})
        (dst / "config.json").write_text(json.dumps(conf))
        (dst / "configuration_tw.py").write_text(
            f"open({str(self.tmp / 'REMOTE_CODE_RAN')!r}, 'w').write('ran')\n"
            "from transformers import LlamaConfig\n\nclass TwConfig(LlamaConfig):\n    model_type = 'tw_remote'\n")
        return dst


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], tuple[list[str], list[str]]]  # -> (argv, substrings the message must contain)
    rc: int = 2


def _c(cfg: Path, *sets: str, cmd: tuple = ("train",)) -> list[str]:
    out = [*cmd, str(cfg)]
    for s in sets:
        out += ["--set", s]
    return out


def _prep(cfg: Path) -> list[str]:
    return ["data", "prepare", str(cfg)]


# ------------------------------------------------------------------------------------------ config cases
CONFIG = [
    Case("config-missing", lambda x: (["train", str(x.tmp / "nope.yaml")], ["nope.yaml", "not found"])),
    Case("config-yaml-syntax", lambda x: (["train", str(x.file("bad.yaml", "train:\n  learning_rate: [1,\n  x: 2\n"))],
                                          ["bad.yaml:"])),
    Case("config-top-level-list", lambda x: (["train", str(x.file("list.yaml", "- a\n- b\n"))], ["list.yaml", "mapping"])),
    Case("config-unknown-key", lambda x: (_c(x.config(), "train.learnin_rate=1e-4"), ["train.learnin_rate", "did you mean"])),
    Case("config-unknown-section", lambda x: (_c(x.config(), "trainer.x=1"), ["unknown key 'trainer'", "did you mean 'train'"])),
    Case("lr-inf", lambda x: (_c(x.config(), "train.learning_rate=.inf"), ["train.learning_rate", "finite"])),
    Case("lr-nan", lambda x: (_c(x.config(), "train.learning_rate=.nan"), ["train.learning_rate", "finite"])),
    Case("lr-negative", lambda x: (_c(x.config(), "train.learning_rate=-1"), ["train.learning_rate", "greater than 0"])),
    Case("dropout-nan", lambda x: (_c(x.config(), "method.lora_dropout=.nan"), ["method.lora_dropout", "finite"])),
    Case("warmup-inf", lambda x: (_c(x.config(), "train.warmup_ratio=.inf"), ["train.warmup_ratio", "finite"])),
    Case("name-traversal", lambda x: (_c(x.config(), "run.name=../../etc_x"), ["run.name", "folder name"])),
    Case("name-absolute", lambda x: (_c(x.config(), f"run.name={x.tmp / 'abs'}"), ["run.name", "separator"])),
    Case("name-dot", lambda x: (_c(x.config(), "run.name=."), ["run.name", "starts with '.'"])),
    Case("name-dotdot-overwrite", lambda x: (_c(x.config(), "run.name=..") + ["--overwrite"], ["run.name", "starts with '.'"])),
    Case("name-subfolder", lambda x: (_c(x.config(), "run.name=a/b"), ["run.name", "separator"])),
    Case("name-hidden", lambda x: (_c(x.config(), "run.name=.board"), ["run.name", "starts with '.'"])),
    Case("name-blank", lambda x: (["train", str(x.config(run={"name": "   "}))], ["run.name", "empty"])),
    Case("set-without-equals", lambda x: (_c(x.config(), "train.learning_rate"), ["--set", "section.key=value"])),
    Case("set-into-a-value", lambda x: (_c(x.config(), "train.learning_rate.x=1"), ["train.learning_rate.x", "not a section"])),
    Case("val-size-fractional-count", lambda x: (_c(x.config(), "data.val_size=2.5"), ["data.val_size", "whole"])),
    Case("stage-unknown", lambda x: (_c(x.config(), "train.stage=rlhf"), ["train.stage", "'sft'", "'dpo'", "rlhf"])),
    Case("stage-dpo-without-pairs", lambda x: (_c(x.config(), "train.stage=dpo"),
                                               ["qa.jsonl:1", "no rejected answer", "train.stage: sft"])),
    Case("max-length-too-small", lambda x: (_c(x.config(), "data.max_length=4"),
                                            ["data.max_length", "greater than or equal to 8"])),
    Case("batch-zero", lambda x: (_c(x.config(), "train.per_device_batch_size=0"),
                                  ["train.per_device_batch_size", "greater than or equal to 1"])),
    Case("template-unknown", lambda x: (_c(x.config(), "template.name=nosuch"), ["template.name", "nosuch"])),
    Case("method-unknown-train", lambda x: (_c(x.config(), "method.name=lorra"), ["method.name", "lora"])),
    Case("method-unknown-lint", lambda x: (_c(x.config(), "method.name=lorra", cmd=("lint",)), ["method.name", "lora"])),
    Case("model-missing", lambda x: (_c(x.config(), "model.name_or_path=/nonexistent/model"),
                                     ["model.name_or_path", "/nonexistent/model"])),
    Case("model-folder-without-config", lambda x: (_c(x.config(), f"model.name_or_path={x.file('m/readme.txt', 'x').parent}"),
                                                   ["config.json", str(x.tmp / "m")])),
    Case("model-asks-for-remote-code", lambda x: (_c(x.config(), f"model.name_or_path={x.remote_code_model()}"),
                                                  [str(x.tmp / "remote-model"), "trust_remote_code"])),
    Case("lint-config-missing", lambda x: (["lint", str(x.tmp / "none.yaml")], ["none.yaml", "not found"])),
]


# ------------------------------------------------------------------------------------------ data cases
def _gbk_jsonl(x: Ctx) -> Path:
    rows = [json.dumps(QA[0]), json.dumps({"instruction": "你好吗？", "output": "很好。"}, ensure_ascii=False)]
    return x.file("gbk.jsonl", ("\n".join(rows) + "\n").encode("gbk"))


def _msgs(content, role="user") -> dict:
    return {"messages": [{"role": role, "content": content}, {"role": "assistant", "content": "ok"}]}


DATA = [
    Case("data-file-missing", lambda x: (_prep(x.config(x.tmp / "missing.jsonl")), ["missing.jsonl", "not found"])),
    Case("data-none-configured", lambda x: (_c(x.config(), "data.datasets=[]", cmd=("data", "prepare")),
                                            ["data.datasets", "no training data"])),
    Case("jsonl-empty", lambda x: (_prep(x.config(x.file("empty.jsonl", ""))), ["empty.jsonl", "empty"])),
    Case("jsonl-blank-lines", lambda x: (_prep(x.config(x.file("blank.jsonl", "\n  \n\n"))), ["blank.jsonl", "no records"])),
    Case("jsonl-malformed-line", lambda x: (_prep(x.config(x.file("bad.jsonl", json.dumps(QA[0]) + "\n" + json.dumps(QA[1])
                                                                  + '\n{"instruction": }\n'))), ["bad.jsonl:3"])),
    Case("jsonl-line-not-object", lambda x: (_prep(x.config(x.file("arr.jsonl", json.dumps(QA[0]) + "\n[1, 2]\n"))),
                                             ["arr.jsonl:2", "JSON object"])),
    Case("jsonl-binary", lambda x: (_prep(x.config(x.file("bin.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00"))),
                                    ["bin.jsonl:1", "not a text file"])),
    Case("jsonl-gbk-bytes", lambda x: (_prep(x.config(_gbk_jsonl(x))), ["gbk.jsonl:2", "encoding"])),
    Case("jsonl-unknown-encoding", lambda x: (_prep(x.config(_gbk_jsonl(x), {"options": {"encoding": "klingon"}})),
                                              ["options.encoding", "klingon"])),
    Case("json-malformed", lambda x: (_prep(x.config(x.file("bad.json", '[{"instruction": "a", "output": "b"},\n'
                                                                        '{"instruction": }]'))), ["bad.json:2"])),
    Case("json-not-a-list", lambda x: (_prep(x.config(x.file("str.json", '"just text"'))), ["str.json", "list"])),
    Case("json-gbk-bytes", lambda x: (_prep(x.config(x.file("gbk.json", ('[\n' + json.dumps(QA[0]) + ',\n{"instruction": '
                                                                          '"你好", "output": "好"}]').encode("gbk")))),
                                      ["gbk.json:3", "encoding"])),
    Case("csv-unclosed-quote", lambda x: (_prep(x.config(x.file("q.csv", 'instruction,output\nq1,a1\n"q2,a2\nq3,a3\n'))),
                                          ["q.csv:row 3", "never closed"])),
    Case("csv-empty", lambda x: (_prep(x.config(x.file("empty.csv", ""))), ["empty.csv", "empty"])),
    Case("csv-header-only", lambda x: (_prep(x.config(x.file("h.csv", "instruction,output\n"))), ["h.csv", "no records"])),
    Case("csv-unknown-encoding", lambda x: (_prep(x.config(x.file("e.csv", "instruction,output\na,b\n"),
                                                           {"options": {"encoding": "nope"}})),
                                            ["options.encoding", "unknown encoding 'nope'"])),
    Case("html-without-text", lambda x: (_prep(x.config(x.file("page.html", "<html><body><nav>Home | About</nav>"
                                                               "<script>render()</script></body></html>"))),
                                         ["page.html", "selectors"])),
    Case("reader-option-typo", lambda x: (_prep(x.config(x.jsonl("o.jsonl", QA), {"options": {"tabel": "x"}})),
                                          ["options", "tabel"])),
    Case("unknown-extension", lambda x: (_prep(x.config(x.file("data.xyz", "x"))), ["data.xyz", "no reader"])),
    Case("unknown-reader", lambda x: (_prep(x.config(x.jsonl("r.jsonl", QA), {"reader": "jsonnl"})),
                                      ["reader", "unknown reader 'jsonnl'", "did you mean 'jsonl'"])),
    Case("columns-missing", lambda x: (_prep(x.config(x.file("cols.csv", "question,answer\nq1,a1\nq2,a2\n"),
                                                      {"columns": {"prompt": "question", "response": "answr"}})),
                                       ["cols.csv:row 2", "columns.response", "answr"])),
    Case("columns-missing-pretrain", lambda x: (_prep(x.config(x.jsonl("p.jsonl", [{"question": "q", "answer": "a"}] * 4),
                                                               {"format": "text", "columns": {"text": "body"}},
                                                               train={"stage": "pretrain"})),
                                                ["p.jsonl:1", "columns.text", "body"])),
    Case("content-is-an-object", lambda x: (_prep(x.config(x.jsonl("dict.jsonl", [_msgs({"text": "hi"})] * 4))),
                                            ["dict.jsonl:1", "content must be text"])),
    Case("content-image-part", lambda x: (_prep(x.config(x.jsonl("img.jsonl", [_msgs([{"type": "image_url",
                                                                                      "image_url": "a.png"}])] * 4))),
                                          ["img.jsonl:1", "image_url"])),
    Case("role-unknown", lambda x: (_prep(x.config(x.jsonl("role.jsonl", [_msgs("hi", role="bot")] * 4))),
                                    ["role.jsonl:1", "role"])),
    Case("conversation-ends-with-user", lambda x: (_prep(x.config(x.jsonl("end.jsonl", [{"messages": [
        {"role": "user", "content": "hi"}]}] * 4))), ["end.jsonl:1", "assistant"])),
    Case("sharegpt-unknown-role", lambda x: (_prep(x.config(x.jsonl("sg.jsonl", [{"conversations": [
        {"from": "robot", "value": "hi"}, {"from": "gpt", "value": "ok"}]}] * 4))), ["sg.jsonl:1", "robot"])),
    Case("val-size-larger-than-data", lambda x: (_c(x.config(), "data.val_size=500", cmd=("data", "prepare")),
                                                 ["data.val_size", "500"])),
    Case("dataset-info-unknown-name", lambda x: (_prep(_info_cfg(x)),
                                                 ["dataset_info.json", "alpaca_zh"])),
    Case("every-record-dropped", lambda x: (_prep(x.config(x.jsonl("blank.jsonl", [{"instruction": "q", "output": ""}] * 4))),
                                            ["blank.jsonl", "empty after reading and cleaning", "dropped.jsonl"])),
    Case("history-not-a-list", lambda x: (_prep(x.config(x.jsonl("h.jsonl", [{**QA[0], "history": "abc"}] * 4))),
                                          ["h.jsonl:1", "history"])),
    Case("format-undetectable", lambda x: (_prep(x.config(x.jsonl("u.jsonl", [{"foo": 1}] * 4))), ["u.jsonl:1", "format"])),
    Case("answer-is-a-list", lambda x: (_prep(x.config(x.jsonl("l.jsonl", [{"instruction": "q", "output": [1, 2]}] * 4))),
                                        ["l.jsonl:1", "expected text"])),
    Case("dataset-folder-empty", lambda x: (_prep(x.config(_mkdir(x.tmp / "emptydir"))),
                                            ["emptydir", "no file that a reader knows"])),
    Case("train-bad-data-line", lambda x: (["train", str(x.config(x.file("t.jsonl", json.dumps(QA[0]) + "\n{oops\n")))],
                                           ["t.jsonl:2"])),
]


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _info_cfg(x: Ctx) -> Path:
    info = x.file("dataset_info.json", json.dumps({"alpaca_en": {"file_name": "qa.jsonl"}}))
    x.jsonl("qa.jsonl", QA)
    cfg = tiny_config(x.tmp, x.tmp / "qa.jsonl")
    cfg["data"].update(datasets=[{"name": "alpaca_zh"}], dataset_info=str(info))
    p = x.tmp / "c.yaml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------------ run-directory cases
def _damaged(fn: Callable[[Path], object], cmd: str = "chat", *extra: str):
    def build(x: Ctx):
        run = x.run()
        where = fn(run)
        argv = {"chat": ["chat", str(run), "--prompt", "hi", "--max-new-tokens", "4"],
                "export": ["export", str(run)], "curves": ["curves", str(run)], "eval": ["eval", str(run)]}[cmd]
        return (argv + [e.format(run=run) for e in extra],
                [w.format(run=run) for w in (where if isinstance(where, list) else [where])])
    return build


def _truncate(p: Path, keep: int | None = None) -> None:
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2 if keep is None else keep])


def _write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


def _template(run: Path, chat_template: str) -> None:
    t = json.loads((run / "template.json").read_text())
    t["chat_template"] = chat_template
    (run / "template.json").write_text(json.dumps(t))


def _run_cfg(run: Path, section: str, **values) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg[section].update(values)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))


RUNS = [
    Case("chat-not-a-run", lambda x: (["chat", str(_mkdir(x.tmp / "notrun")), "--prompt", "hi"], ["notrun", "config.yaml"])),
    Case("run-config-yaml-corrupt", _damaged(lambda r: (_write(r / "config.yaml", "model: [\n  name_or_path: x\n"),
                                                        ["{run}/config.yaml:", "not valid YAML"])[1])),
    Case("run-config-yaml-scalar", _damaged(lambda r: (_write(r / "config.yaml", "hello\n"),
                                                       ["{run}/config.yaml", "does not hold a config"])[1])),
    Case("run-config-yaml-invalid", _damaged(lambda r: (_run_cfg(r, "train", learning_rate=-1),
                                                        ["{run}/config.yaml", "train.learning_rate"])[1])),
    Case("run-config-yaml-export", _damaged(lambda r: (_write(r / "config.yaml", "{{{\n"),
                                                       ["{run}/config.yaml:", "not valid YAML"])[1], "export")),
    Case("template-json-corrupt", _damaged(lambda r: (_write(r / "template.json", '{"name": "x",\n'),
                                                      ["{run}/template.json:", "not valid JSON"])[1])),
    Case("template-json-no-template", _damaged(lambda r: (_write(r / "template.json", '{"name": "x"}'),
                                                          ["{run}/template.json", "lacks its chat template"])[1])),
    Case("template-json-missing", _damaged(lambda r: ((r / "template.json").unlink(), ["{run}", "no template.json"])[1])),
    Case("adapter-truncated", _damaged(lambda r: (_truncate(r / "adapter" / "adapter_model.safetensors"),
                                                  ["{run}/adapter/adapter_model.safetensors", "cannot be read"])[1])),
    Case("adapter-header-cut", _damaged(lambda r: (_truncate(r / "adapter" / "adapter_model.safetensors", 5),
                                                   ["{run}/adapter/adapter_model.safetensors", "cannot be read"])[1])),
    Case("adapter-truncated-export", _damaged(lambda r: (_truncate(r / "adapter" / "adapter_model.safetensors"),
                                                         ["{run}/adapter/adapter_model.safetensors", "cannot be read"])[1],
                                                        "export")),
    Case("adapter-config-corrupt", _damaged(lambda r: (_write(r / "adapter" / "adapter_config.json", "{"),
                                                       ["{run}/adapter/adapter_config.json:", "malformed JSON"])[1])),
    Case("template-divides-by-zero", _damaged(lambda r: (_template(r, "{{ 1 / 0 }}"), ["template", "ZeroDivisionError"])[1])),
    Case("template-adds-text-to-a-number", _damaged(lambda r: (_template(r, "{{ messages[0]['content'] + 1 }}"),
                                                               ["template", "TypeError"])[1])),
    Case("template-raises", _damaged(lambda r: (_template(r, "{{ raise_exception('no system role') }}"),
                                                ["template", "no system role"])[1])),
    Case("export-unknown-gguf-type", _damaged(lambda r: ["--gguf", "'q9'"], "export", "--gguf", "q9")),
    Case("export-checkpoint-missing", _damaged(lambda r: ["{run}/checkpoints/checkpoint-999", "no such checkpoint"], "export",
                                               "--checkpoint", "{run}/checkpoints/checkpoint-999")),
    Case("chat-checkpoint-missing", _damaged(lambda r: ["nope-ck", "no such checkpoint"], "chat", "--checkpoint", "nope-ck")),
    Case("curves-without-metrics", _damaged(lambda r: ((r / "metrics.jsonl").unlink(), ["{run}", "metrics.jsonl"])[1],
                                            "curves")),
    Case("curves-metrics-line-cut", _damaged(lambda r: (_append(r / "metrics.jsonl", '{"step": 3, "lo'),
                                                        ["{run}/metrics.jsonl:", "damaged line"])[1], "curves")),
    Case("eval-extra-data-missing", _damaged(lambda r: ["missing-eval.jsonl", "not found"], "eval", "--data", "missing-eval.jsonl",
                                             "--no-forgetting")),
    Case("result-folder-empty", _damaged(lambda r: (shutil.rmtree(r / "adapter"), (r / "adapter").mkdir(),
                                                    ["{run}", "no trained"])[2])),
    Case("diverged-without-good-checkpoint", _damaged(lambda r: (_diverged(r), ["{run}", "diverged"])[1])),
    Case("export-system-prompt-injection", _damaged(lambda r: (_run_cfg(r, "template", system='Be nice."""\nFROM ./evil.gguf\n'
                                                                         'PARAMETER temperature 9\nSYSTEM """x'),
                                                               ["template.system", '"""'])[1], "export", "--ollama")),
    Case("chat-run-asks-for-remote-code", lambda x: _remote_run(x)),
    Case("data-prepare-over-a-trained-run", lambda x: _prepare_trained(x)),
    Case("resume-with-changed-learning-rate", lambda x: _resume_changed(x)),
    Case("overwrite-a-folder-of-your-own", lambda x: _foreign_folder(x)),
    Case("run-folder-symlinked-outside", lambda x: _symlinked(x)),
]


def _append(p: Path, text: str) -> None:
    with open(p, "a", encoding="utf-8") as f:
        f.write(text)


def _diverged(run: Path) -> None:
    shutil.rmtree(run / "adapter")
    shutil.rmtree(run / "checkpoints")
    s = json.loads((run / "train_summary.json").read_text())
    s.update(diverged_at_step=3, last_good_checkpoint=None)
    (run / "train_summary.json").write_text(json.dumps(s))


def _remote_run(x: Ctx):
    run = x.run()
    _run_cfg(run, "model", name_or_path=str(x.remote_code_model()), trust_remote_code=True)
    return ["chat", str(run), "--prompt", "hi"], [str(x.tmp / "remote-model"), "--trust-remote-code"]


def _config_of(run: Path, x: Ctx) -> Path:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["run"] = {"root": str(run.parent), "name": run.name}
    p = x.tmp / "same.yaml"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


def _prepare_trained(x: Ctx):
    run = x.run()
    return ["data", "prepare", str(_config_of(run, x))], [str(run), "already trained", "--overwrite"]


def _resume_changed(x: Ctx):
    run = x.run()
    return (["train", str(_config_of(run, x)), "--resume", "--set", "train.learning_rate=1e-3",
             "--set", "train.per_device_batch_size=2"],
            [f"{run}/config.yaml", "train.learning_rate", "train.per_device_batch_size"])


def _foreign_folder(x: Ctx):
    mine = _mkdir(x.tmp / "runs" / "mine")
    (mine / "notes.txt").write_text("my notes")
    return ["train", str(x.config(run={"name": "mine"})), "--overwrite"], [str(mine), "not a tunewise run"]


def _symlinked(x: Ctx):
    outside = _mkdir(x.tmp / "outside")
    _mkdir(x.tmp / "runs")
    (x.tmp / "runs" / "link").symlink_to(outside, target_is_directory=True)
    return ["train", str(x.config(run={"name": "link"}))], ["run.name", "not inside"]


CASES = CONFIG + DATA + RUNS


def test_the_table_is_large_enough():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


# ------------------------------------------------------------------------------------------ the check
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tw_home, tiny_model_dirs):
    return train_demo_run(tmp_path_factory.mktemp("trained"), tw_home)


def _snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def _cli(argv: list[str]) -> tuple[int, str]:
    """`tunewise ARGV` in this process; an exception escaping main() is what a user would see as a traceback."""
    from tunewise.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 2
        except BaseException:
            traceback.print_exc()
            rc = 1
    return rc, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_answered(case, tmp_path, trained, monkeypatch):
    from tunewise.fileio import is_temp
    from tunewise.runs import allow_remote_code

    monkeypatch.chdir(tmp_path)
    allow_remote_code(False)
    ctx = Ctx(tmp_path, trained)
    argv, wheres = case.build(ctx)
    before = _snapshot(tmp_path)
    rc, text = _cli(argv)
    assert "Traceback" not in text, text
    assert rc == case.rc, text
    for w in wheres:
        assert w in text, f"the message does not name {w!r}:\n{text}"
    after = _snapshot(tmp_path)
    temps = [p for p in tmp_path.rglob("*") if is_temp(p) or p.name in (".saving",) or p.name.startswith(".deleting-")]
    assert not temps, temps
    changed = [p for p, st in after.items() if before.get(p) != st and p.name in OUTPUTS]
    assert not changed, f"a failed command wrote outputs: {changed}"
    assert not (tmp_path / "REMOTE_CODE_RAN").exists(), "a model's own code ran without --trust-remote-code"
    assert not (tmp_path.parent / "etc_x").exists() and not (tmp_path / "abs").exists()
