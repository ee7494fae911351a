"""`tunewise explain [KEY]`, `tunewise advise CONFIG`, `tunewise lint CONFIG`."""

from __future__ import annotations

import json
import sys

def cmd_explain(a) -> int:
    from tunewise import api
    from tunewise.advise.explain import explain_json

    if a.json:
        print(json.dumps(explain_json(a.key), ensure_ascii=False, indent=2, default=str))
    else:
        print(api.explain(a.key, lang=a.lang))
    return 0


def _load(a):
    from tunewise.config import load_config

    return load_config(a.config, a.overrides)


def cmd_advise(a) -> int:
    from tunewise import api
    from tunewise.advise.advise import apply_advice, to_json
    from tunewise.advise.report import format_advice
    from tunewise.advise.lint import explicit_keys
    from tunewise.errors import ConfigError

    if a.nproc < 1:
        raise ConfigError("--nproc must be at least 1", where="--nproc")
    cfg = _load(a)
    result = api.advise(cfg, nproc=a.nproc, explicit=explicit_keys(a.config, a.overrides), measure=a.measure,
                        budgets=_budgets(a.budgets), family=a.family)
    if not result["hardware"].get("gpus"):  # CPU training: the thread count train would choose now, and why
        from tunewise.cpu import choose_threads

        choice = choose_threads(cfg.train.num_threads)
        result["hardware"]["threads"] = {"threads": choice.threads, "source": choice.source, "busy_cores": choice.busy,
                                         "line": choice.line(a.lang)}
    if a.json:
        print(json.dumps(to_json(result, a.lang), ensure_ascii=False, indent=2, default=str))
    else:
        print(format_advice(result, a.lang))
    if a.apply:
        out = apply_advice(a.config, result["recommendations"], a.apply)
        print(("wrote " if a.lang == "en" else "已写入 ") + str(out), file=sys.stderr if a.json else sys.stdout)
    return 0


def cmd_lint(a) -> int:
    from tunewise.advise.lint import explicit_keys, gather_facts, lint
    from tunewise.errors import ConfigError

    from tunewise import methods

    cfg = _load(a)
    methods.check_config(cfg)  # an unknown method (or one that cannot take this config) is an error, not "no findings"
    facts, _ = gather_facts(cfg, nproc=a.nproc, explicit=explicit_keys(a.config, a.overrides))
    found = lint(cfg, facts)
    if a.json:
        print(json.dumps([f.to_dict(a.lang) for f in found], ensure_ascii=False, indent=2))
    elif not found:
        print("没有发现问题" if a.lang == "zh" else "no findings")
    else:
        for f in found:
            print(f.render(a.lang).replace("warning", "error", 1) if a.strict and f.severity != "note" else f.render(a.lang))
    refused = [f for f in found if f.severity != "note"]  # a note explains a choice; it never refuses
    if a.strict and refused:
        raise ConfigError(f"{len(refused)} lint finding(s) with --strict", where=a.config,
                          fix="fix them, or run without --strict to treat them as warnings")
    return 0


def _config_args(p) -> None:
    p.add_argument("config", help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--lang", choices=["en", "zh"], default="en")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes the run will use")


def _budgets(text: str | None) -> list[float]:
    from tunewise.errors import ConfigError

    try:
        out = [float(x) for x in (text or "").split(",") if x.strip()]
    except ValueError:
        out = [-1.0]
    if any(x <= 0 for x in out):
        raise ConfigError(f"--budgets {text!r} is not a list of sizes in GiB", where="--budgets",
                          fix="write positive numbers separated by commas, e.g. --budgets 8,16,24")
    return out


def register(sub) -> None:
    from tunewise.advise.largest import families

    e = sub.add_parser("explain", help="explain config keys: what each does, too high/low, typical value, interactions")
    e.add_argument("key", nargs="?", help="a key such as train.learning_rate or lora_r (omit for an overview)")
    e.add_argument("--lang", choices=["en", "zh"], default="en")
    e.add_argument("--json", action="store_true", help="machine-readable {key: {...}}")
    e.set_defaults(func=cmd_explain)

    a = sub.add_parser("advise", help="estimate memory per method and recommend batch size, LR, LoRA rank, max_length for this machine")
    _config_args(a)
    a.add_argument("--apply", metavar="OUT.yaml", help="write the config with the advice filled in")
    a.add_argument("--measure", action="store_true",
                   help="on a CPU, time training at each batch size that fits (a few minutes) and advise the fastest")
    a.add_argument("--budgets", metavar="GIB,...",
                   help="also say the largest model of the family each method fits in these memory sizes, e.g. 8,16,24")
    a.add_argument("--family", choices=sorted(families()),
                   help="the model family for that table (default: the configured model's, when it is a known one)")
    a.set_defaults(func=cmd_advise)

    lt = sub.add_parser("lint", help="check a config for common mistakes (warnings; --strict makes them errors)")
    _config_args(lt)
    lt.add_argument("--strict", action="store_true", help="exit with status 2 when there is any finding")
    lt.set_defaults(func=cmd_lint)
