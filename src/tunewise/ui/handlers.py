"""The board's callbacks: each takes the form's values and returns what the page shows.

Kept apart from the layout (app.py) so every action can be exercised without a browser.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gradio as gr
import pandas as pd

from tunewise.errors import TunewiseError
from tunewise.runs import RunDir
from tunewise.ui import configure, jobs, knowledge, live
from tunewise.ui.guard import board_run, refusal
from tunewise.ui.i18n import param_label

PARAM_KEYS = [k for k, _ in configure.FORM_PARAMS]


def error_text(e: Exception) -> str:
    text = e.render() if isinstance(e, TunewiseError) else f"{type(e).__name__}: {e}"
    return "**Error**\n```\n" + text + "\n```"


def param_info(key: str, lang: str, advice: dict | None) -> str:
    entries, _ = knowledge.explanations(lang)
    text = knowledge.describe(entries.get(key, {}), lang)
    rec = knowledge.recommendation(knowledge.pick(advice, lang), key, lang)
    if rec is not None:
        value, reason = rec
        text += f"\n→ {'顾问建议' if lang == 'zh' else 'advisor'}: {value}" + (f" — {reason}" if reason else "")
    elif not knowledge.advise_available():
        text += "\n→ " + ("顾问不可用（advise 模块未安装）" if lang == "zh" else "advisor unavailable (the advise stage is not installed)")
    return text


def param_updates(lang: str, advice: dict | None) -> list:
    return [gr.update(label=param_label(k, lang), info=param_info(k, lang, advice)) for k in PARAM_KEYS]


def all_params_table(lang: str, cfg=None, advice: dict | None = None) -> pd.DataFrame:
    entries, _ = knowledge.explanations(lang)
    current = {}
    if cfg is not None:
        current = _flatten(cfg.model_dump(mode="json"))
    rows = []
    for key, e in entries.items():
        rec = knowledge.recommendation(knowledge.pick(advice, lang), key, lang)
        rows.append({"key": key, "explanation": knowledge.describe(e, lang),
                     "default": _short(e.get("default")), "current": _short(current.get(key, "")),
                     "advisor": _short(rec[0]) if rec else ""})
    return pd.DataFrame(rows, columns=["key", "explanation", "default", "current", "advisor"])


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "options" and k != "columns" and k != "tags":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v) -> str:
    s = "" if v is None else str(v)
    return s if len(s) <= 80 else s[:77] + "..."


def form_dict(root: str, name: str, model: str, data_path: str, values: tuple) -> dict:
    return configure.form_to_dict(name=name, root=root, model=model, data_path=data_path,
                                  values=dict(zip(PARAM_KEYS, values)))


def advisor_markdown(advice: dict | None, lang: str) -> str:
    zh = lang == "zh"
    if advice and "error" in advice:
        return ("**顾问无法给出建议**：" if zh else "**The advisor could not judge this config**: ") + advice["error"]
    advice = knowledge.pick(advice, lang)
    if advice is None:
        return ("顾问不可用：advise 模块尚未安装，参数说明来自配置模式本身。" if zh
                else "Advisor unavailable: the advise stage is not installed; explanations come from the config schema.")
    lines = []
    hw = advice.get("hardware") or {}
    if hw:
        gpus = hw.get("gpus") or []
        hw_text = f"{hw.get('cpu_cores', '?')} CPU cores, {hw.get('ram_gib', '?')} GiB RAM" + (
            ", GPUs: " + ", ".join(f"{g.get('name')}" for g in gpus) if gpus else ", no GPU")
        lines.append(("**硬件**：" if zh else "**Hardware**: ") + hw_text + "\n")
    mem = advice.get("memory")
    if isinstance(mem, dict) and mem:
        lines.append("\n**显存/内存估计（每进程）**：" if zh else "\n**Memory estimate (per process)**:")
        for method, m in mem.items():
            if isinstance(m, dict) and "total_gib" in m:
                fits = ("放得下" if zh else "fits") if m.get("fits_as_configured", m.get("fits")) else ("放不下" if zh else "does NOT fit")
                load = (f" ({'加载时的峰值；需空闲' if zh else 'the peak while loading; needs'} {m['needed_gib']} GiB"
                        f"{'' if zh else ' free'})") if m.get("loading", 0) > m.get("training", m.get("total", 0)) else ""
                lines.append(f"- {method}: {m['total_gib']} GiB{load} / {m.get('budget_gib', '?')} GiB ({m.get('device', '')}) — {fits}")
    recs = advice.get("recommendations") or {}
    if recs:
        lines.append("\n**建议**：" if zh else "\n**Recommendations**:")
        for k, v in recs.items():
            why = knowledge.recommendation(advice, k, lang)
            lines.append(f"- `{k}` = **{v}**" + (f" — {why[1]}" if why and why[1] else ""))
    return "\n".join(lines)


def lint_markdown(items: list[dict], lang: str) -> str:
    if not items:
        return ""
    head = "### 训练前检查" if lang == "zh" else "### Checks before training"
    out = [head]
    for i in items:
        sev = str(i.get("severity", "warning")).upper()
        msg = i.get("message_zh") if lang == "zh" and i.get("message_zh") else i.get("message", "")
        line = f"- **{sev}** `{i.get('code', '')}`: {msg}"
        if i.get("fix"):
            line += f" — {'解决' if lang == 'zh' else 'fix'}: {i['fix']}"
        out.append(line)
    return "\n".join(out)


def check(root: str, lang: str, name: str, model: str, data_path: str, more: str, values: tuple) -> dict:
    """Validate, save the YAML, ask the advisor. Returns a dict of what the page shows."""
    try:
        cfg = configure.build_config(form_dict(root, name, model, data_path, values), more)
    except Exception as e:  # a person reads this: show it, do not crash the page
        return {"ok": False, "message": error_text(e)}
    path = configure.save_config(cfg, root)
    advice = knowledge.advise(path, cfg)
    lint = knowledge.lint_items(knowledge.pick(advice, lang))
    yaml_text = path.read_text(encoding="utf-8")
    ok_text = (f"配置有效，已保存到 `{path}`。" if lang == "zh" else f"The config is valid; saved to `{path}`.")
    if not cfg.data.datasets:
        ok_text += ("\n\n**还没有训练数据**：请填写路径、上传文件或使用演示数据。" if lang == "zh"
                    else "\n\n**No training data yet**: enter a path, upload a file or use the demo data.")
    return {"ok": True, "cfg": cfg, "path": path, "yaml": yaml_text, "advice": advice,
            "message": ok_text + ("\n\n" + lint_markdown(lint, lang) if lint else "")}


def start_training(root: str, lang: str, cfg_path: Path, cfg, overwrite: bool) -> tuple[str, str | None]:
    """Start `tunewise train` for a checked config. Returns (message, run dir or None)."""
    from tunewise.runs import check_inside, run_dir_for

    try:  # "more settings" can set run.root: the run must still be a folder of this board's root
        run = check_inside(run_dir_for(cfg), root, what="run directory", key="run.root / run.name")
    except TunewiseError as e:
        return error_text(e), None
    if run.exists() and any(p.name != "ui_train.log" for p in run.iterdir()) and not overwrite:
        return ((f"运行目录 `{run}` 已存在：勾选“覆盖”、点击“继续训练”，或换一个运行名称。" if lang == "zh"
                 else f"The run directory `{run}` exists: tick 'overwrite', press Resume, or choose another run name."), None)
    try:
        jobs.start_train(cfg_path, run, overwrite=run.exists())
    except RuntimeError as e:
        return str(e), None
    return (f"训练已开始：`{run}`" if lang == "zh" else f"Training started: `{run}`"), str(run)


def resume_training(root: str, run: str, lang: str) -> str:
    if not run:
        return "请先选择一个运行。" if lang == "zh" else "Choose a run first."
    run = board_run(root, run)
    if run is None:
        return refusal(lang)
    if remote_code_asked(run) and not jobs.remote_code():
        return ("这个运行的 config.yaml 要求执行模型自带的代码（model.trust_remote_code）；只有用 "
                "`tunewise ui --trust-remote-code` 启动面板时才允许。" if lang == "zh" else
                "This run's config.yaml asks to run its model's own code (model.trust_remote_code); the board allows "
                "that only when started with `tunewise ui --trust-remote-code`.")
    try:
        jobs.start_train(RunDir(run).config_file, run, resume=True)
    except RuntimeError as e:
        return str(e)
    return (f"继续训练：`{run}`（从最新的检查点）" if lang == "zh" else f"Resuming `{run}` from its newest checkpoint")


def remote_code_asked(run: str | Path) -> bool:
    import yaml

    try:
        data = yaml.safe_load(RunDir(run).config_file.read_text(encoding="utf-8"))
        return bool(data["model"]["trust_remote_code"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return False


def stop_training(root: str, run: str, lang: str) -> str:
    if run and board_run(root, run) is None:
        return refusal(lang)
    job = jobs.get("train", run) if run else None
    if job is None or not job.running():
        return "没有正在进行的训练。" if lang == "zh" else "No training is running for this run."
    jobs.stop(job)
    from tunewise.runs import newest_checkpoint

    ck = newest_checkpoint(run)
    where = str(ck) if ck else ("尚无检查点" if lang == "zh" else "no checkpoint yet")
    return (f"已停止；检查点保留：{where}" if lang == "zh" else f"Stopped; checkpoints stay: {where}")


def train_status(root: str, run: str, lang: str) -> dict:
    """Everything the Train tab shows for a run, from its files and (if the board started it) its process."""
    zh = lang == "zh"
    if run and board_run(root, run) is None:
        return {"status": refusal(lang), "rows": [], "verdict": "", "log": ""}
    if not run:
        return {"status": "选择或开始一个运行。" if zh else "Choose or start a run.", "rows": [], "verdict": "", "log": ""}
    rows = live.read_rows(run)
    job = jobs.get("train", run)
    cur = live.latest(rows)
    if job is not None and "step" in cur:
        job.note_step(int(cur["step"]))
    state = job.state() if job else ("finished" if RunDir(run).summary.exists() else "idle")
    names = {"running": "训练中", "stopped": "已停止", "finished": "已完成", "failed": "失败", "idle": "未运行"}
    total = job.total_steps if job else None
    step = cur.get("step", 0)
    cells = [("状态" if zh else "state", names[state] if zh else state),
             ("步数" if zh else "step", f"{step}/{total}" if total else str(step)),
             ("轮次" if zh else "epoch", cur.get("epoch", "-")),
             ("训练损失" if zh else "loss", _fmt(cur.get("loss"))),
             ("验证损失" if zh else "val loss", _fmt(cur.get("val_loss"))),
             ("学习率" if zh else "lr", _fmt(cur.get("lr"), "{:.2e}")),
             ("词元/秒" if zh else "tokens/s", _fmt(cur.get("tokens_per_s"), "{:.0f}")),
             ("预计剩余" if zh else "ETA", live.format_eta(job.eta_seconds()) if job else "-")]
    status = "| " + " | ".join(c[0] for c in cells) + " |\n|" + "---|" * len(cells) + "\n| " + \
             " | ".join(str(c[1]) for c in cells) + " |"
    if state == "failed":
        status += "\n\n" + ("**训练失败**，请查看下方日志。" if zh else "**Training failed**: see the log below.")
    verdict = "" if state == "running" else live.verdict_markdown(live.diagnosis(run), lang)
    log = job.tail(25) if job else _tail_file(Path(run) / "ui_train.log")
    return {"status": status, "rows": rows, "verdict": verdict, "log": log, "state": state}


def _fmt(v, spec: str = "{:.4f}") -> str:
    return "-" if v is None else spec.format(v)


def _tail_file(p: Path, n: int = 25) -> str:
    try:
        return "".join(p.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-n:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------- evaluate / export
def start_eval(root: str, run: str, lang: str, max_samples, forgetting: bool) -> str:
    if run and board_run(root, run) is None:
        return refusal(lang)
    if not run or not live.has_result(run):
        return "这个运行还没有训练结果。" if lang == "zh" else "This run has no trained result yet."
    args = ["eval", run]
    if max_samples:
        args += ["--max-samples", str(int(max_samples))]
    if not forgetting:
        args.append("--no-forgetting")
    args += jobs.remote_code_args()
    try:
        jobs.start("eval", run, args)
    except RuntimeError as e:
        return str(e)
    return "评估进行中……" if lang == "zh" else "Evaluation running..."


def eval_status(root: str, run: str, lang: str) -> tuple[str, pd.DataFrame, str]:
    run = board_run(root, run)
    job = jobs.get("eval", run) if run else None
    report = live.eval_report(run) if run else None
    if job is not None and job.running():
        return ("评估进行中……" if lang == "zh" else "Evaluation running...") + "\n```\n" + job.tail(6) + "```", \
            pd.DataFrame(), ""
    msg = ""
    if job is not None and job.state() == "failed":
        msg = ("**评估失败**" if lang == "zh" else "**Evaluation failed**") + "\n```\n" + job.tail(12) + "```"
    elif report:
        msg = (f"报告：`{Path(run) / 'eval' / 'report.md'}`" if lang == "zh" else f"Report: `{Path(run) / 'eval' / 'report.md'}`")
    return msg, live.eval_table(report), live.forgetting_markdown(report, lang)


def export_available() -> bool:
    try:
        return importlib.util.find_spec("tunewise.export.cli") is not None
    except ModuleNotFoundError:
        return False


def start_export(root: str, run: str, lang: str, gguf: str, ollama: bool) -> str:
    if run and board_run(root, run) is None:
        return refusal(lang)
    if not run or not live.has_result(run):
        return "这个运行还没有训练结果。" if lang == "zh" else "This run has no trained result yet."
    if not export_available():
        return ("导出命令（tunewise export）尚未安装。" if lang == "zh"
                else "The export command (`tunewise export`) is not installed in this version.")
    args = ["export", run]
    if gguf and gguf != "none":
        args += ["--gguf", gguf]
    if ollama:
        args.append("--ollama")
    args += jobs.remote_code_args()
    Path(run, "export", "verify.json").unlink(missing_ok=True)  # never show a previous export's verdict as this one's
    try:
        jobs.start("export", run, args)
    except RuntimeError as e:
        return str(e)
    return "导出进行中……" if lang == "zh" else "Export running..."


def export_status(root: str, run: str, lang: str) -> tuple[str, str]:
    run = board_run(root, run)
    job = jobs.get("export", run) if run else None
    v = live.verify_result(run) if run else None
    log = job.tail(20) if job else _tail_file(Path(run) / "ui_export.log") if run else ""
    if job is not None and job.running():
        return ("导出进行中……" if lang == "zh" else "Export running..."), log
    if v:
        return live.verify_markdown(v, lang), log
    if job is not None and job.state() == "failed":
        return ("## FAIL\n\n" + ("导出命令失败，原因见日志。" if lang == "zh" else "The export command failed; the log says why.")), log
    if job is not None and job.state() == "finished":
        merged = RunDir(run).merged
        return ((f"已合并到 `{merged}`。未选择 GGUF，因此没有可验证的导出。" if lang == "zh"
                 else f"Merged into `{merged}`. No GGUF was requested, so there is nothing to verify."), log)
    return "", log
