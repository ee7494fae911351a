"""Command line: one thin command per verb; parsing and calling a stage, nothing more."""

from __future__ import annotations

import argparse
import os
import sys

from tunewise.errors import TunewiseError


# The later stages' command fronts: each module's register(subparsers) adds its verbs.
STAGE_FRONTS = ["tunewise.curves.cli", "tunewise.evaluate.cli", "tunewise.export.cli", "tunewise.advise.cli",
                "tunewise.models.cli", "tunewise.ui.cli"]


def _common_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set train.learning_rate=1e-4")


def cmd_train(a) -> int:
    from tunewise import api
    from tunewise.config import load_config

    if a.nproc and a.nproc > 1 and "LOCAL_RANK" not in os.environ:
        from tunewise.train.distributed import launch

        argv, skip = [], False
        for x in a.argv:
            if skip:
                skip = False
            elif x == "--nproc":
                skip = True
            elif not x.startswith("--nproc="):
                argv.append(x)
        return launch(argv, a.nproc)
    cfg = load_config(a.config, a.overrides + (["data.strict=false"] if a.no_strict else []))
    run = api.train(cfg, resume=a.resume, overwrite=a.overwrite, strict_lint=a.strict_lint)
    if os.environ.get("RANK", "0") == "0":
        print(run)
    return 0


def cmd_data_prepare(a) -> int:
    from tunewise import api
    from tunewise.config import load_config

    strict = ["data.strict=true"] if a.strict else (["data.strict=false"] if a.no_strict else [])
    cfg = load_config(a.config, a.overrides + strict)
    print(api.prepare_data(cfg, out=a.out, overwrite=a.overwrite))
    return 0


def cmd_data_preview(a) -> int:
    from tunewise.config import load_config
    from tunewise.data.commands import preview_command

    cfg = load_config(a.config, a.overrides)
    preview_command(cfg, n=a.n, color=not a.no_color)
    return 0


def cmd_methods(a) -> int:
    from tunewise import methods

    for m in methods.all_methods():
        print(f"{m.name:<8} {m.summary_zh if a.lang == 'zh' else m.summary_en}")
    return 0


def cmd_chat(a) -> int:
    from tunewise.infer.cli import chat_command
    from tunewise.runs import allow_remote_code

    allow_remote_code(a.trust_remote_code)
    return chat_command(a)


def add_trust_remote_code(p: argparse.ArgumentParser) -> None:
    """The opt-in, for commands that load a run's model: needed on every call (config.yaml alone is not enough)."""
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the Python code the run's model ships (its config.yaml says model.trust_remote_code: true); "
                   "a run directory alone never turns this on")


def cmd_demo(a) -> int:
    from tunewise.demo import run_demo

    run_demo(root=a.root, quick=a.quick, overwrite=not a.keep, export=not a.no_export)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunewise", description="Fine-tune an LLM that behaves: train, diagnose, evaluate, export, verify.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="fine-tune as the config says; writes a run directory")
    _common_config(t)
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this run")
    t.add_argument("--overwrite", action="store_true", help="delete an existing run directory of the same name first")
    t.add_argument("--no-strict", action="store_true", help="skip malformed records (listed in data/dropped.jsonl) instead of stopping")
    t.add_argument("--strict-lint", action="store_true", help="refuse to train when `tunewise lint` finds anything")
    t.add_argument("--nproc", type=int, default=0, help="data-parallel processes on this machine (launched with torchrun)")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("data", help="prepare or preview training data")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dp = dsub.add_parser("prepare", help="read, clean, split and report; writes data/ of the run directory")
    _common_config(dp)
    strictness = dp.add_mutually_exclusive_group()
    strictness.add_argument("--strict", action="store_true", help="stop on the first malformed row or record (the default: data.strict)")
    strictness.add_argument("--no-strict", action="store_true", help="skip malformed rows/records and list them in data/dropped.jsonl")
    dp.add_argument("--out", help="write data/ here instead of the run directory")
    dp.add_argument("--overwrite", action="store_true", help="the run is already trained: start it over (deletes its "
                    "checkpoints and results) with the new data")
    dp.set_defaults(func=cmd_data_prepare)
    dv = dsub.add_parser("preview", help="print decoded examples with the supervised (trained) span marked [[...]]")
    _common_config(dv)
    dv.add_argument("-n", type=int, default=3, help="number of examples")
    dv.add_argument("--no-color", action="store_true")
    dv.set_defaults(func=cmd_data_preview)

    m = sub.add_parser("methods", help="list tuning methods with a one-line explanation")
    m.add_argument("--lang", choices=["en", "zh"], default="en")
    m.set_defaults(func=cmd_methods)

    c = sub.add_parser("chat", help="chat with a trained run (its own template and stop tokens)")
    c.add_argument("run", help="run directory")
    c.add_argument("--prompt", help="one-shot: answer this and exit")
    c.add_argument("--system", help="system prompt")
    c.add_argument("--base", action="store_true", help="chat with the base model instead of the tuned one")
    c.add_argument("--tools", help="JSON file listing the functions the model may call; its calls are shown parsed "
                   "and you type each tool's result")
    c.add_argument("--checkpoint", help="use this checkpoint instead of the final result")
    c.add_argument("--temperature", type=float)
    c.add_argument("--top-k", type=int)
    c.add_argument("--top-p", type=float)
    c.add_argument("--repetition-penalty", type=float)
    c.add_argument("--max-new-tokens", type=int)
    c.add_argument("--seed", type=int)
    add_trust_remote_code(c)
    c.set_defaults(func=cmd_chat)

    dm = sub.add_parser("demo", help="the main demo: fine-tune Gemma 3 270M offline on the bundled data and compare")
    dm.add_argument("--root", default="runs", help="folder for the demo run")
    dm.add_argument("--quick", action="store_true", help="a few steps only (for smoke tests)")
    dm.add_argument("--keep", action="store_true", help="keep an existing demo run instead of retraining")
    dm.add_argument("--no-export", action="store_true", help="skip the GGUF/Ollama export and its verification")
    dm.set_defaults(func=cmd_demo)

    import importlib

    for front in STAGE_FRONTS:  # a stage that fails to import is an error, never a silently missing verb
        importlib.import_module(front).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # No global offline switch: only a Hub id that is not cached yet (model.name_or_path) and `export --push` reach
    # the Hub; local folders never do. Library telemetry stays off everywhere (tunewise/__init__.py).
    import warnings

    # Library deprecation chatter is for library authors, not for someone fine-tuning a model; bitsandbytes
    # announces at import that an optional CPU kernel package is missing (4-bit works without it).
    warnings.filterwarnings("ignore", category=FutureWarning)
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    try:
        return args.func(args) or 0
    except TunewiseError as e:
        print(f"error: {e.render()}", file=sys.stderr)
        return 2
    except Exception as e:  # a full disk anywhere (torch and safetensors word it their own way): every write is
        from tunewise.fileio import disk_full_error, is_disk_full  # atomic, so what was complete before is still there

        if not is_disk_full(e):
            raise
        where = getattr(e, "filename", None) or "the disk"
        err = disk_full_error(e, where, "files written before were completed atomically and are kept")
        print(f"error: {err.render()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
