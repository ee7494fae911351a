"""`tunewise inspect MODEL`."""

from __future__ import annotations

import json


def cmd_inspect(a) -> int:
    from tunewise.models.inspect import model_summary, print_summary
    from tunewise.models.load import resolve_model

    resolved = resolve_model(a.model)
    s = model_summary(resolved.path, a.trust_remote_code)
    if resolved.previous_run:
        s["run"] = str(resolved.previous_run)
    if a.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
    else:
        print_summary(s)
    return 0


def register(sub) -> None:
    p = sub.add_parser("inspect", help="show a model's layers, sizes, module names (LoRA targets) and chat template")
    p.add_argument("model", help="alias (gemma3-270m, smollm2-135m-instruct, tiny-llama), local folder, .gguf file, run directory or cached hub id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_inspect)
