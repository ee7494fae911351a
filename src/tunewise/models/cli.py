"""`tunewise inspect MODEL` and `tunewise download ORG/NAME`."""

from __future__ import annotations

import json


def cmd_inspect(a) -> int:
    from tunewise.models.inspect import model_summary, print_summary
    from tunewise.models.load import resolve_model

    resolved = resolve_model(a.model, a.revision)
    s = model_summary(resolved.path, a.trust_remote_code)
    if resolved.previous_run:
        s["run"] = str(resolved.previous_run)
    if a.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
    else:
        print_summary(s)
    return 0


def cmd_download(a) -> int:
    from tunewise.errors import ModelError
    from tunewise.models import hub

    if not hub.looks_like_hub_id(a.model):
        raise ModelError(f"'{a.model}' is not a Hugging Face Hub id", where="tunewise download",
                         fix="pass ORG/NAME as on the model's page, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    print(hub.resolve_hub_model(a.model, a.revision))
    return 0


def register(sub) -> None:
    p = sub.add_parser("inspect", help="show a model's layers, sizes, module names (LoRA targets) and chat template")
    p.add_argument("model", help="alias (gemma3-270m, smollm2-135m-instruct, tiny-llama), local folder, .gguf file, run directory "
                                 "or Hugging Face Hub id (downloaded once into the Hugging Face cache)")
    p.add_argument("--revision", help="Hub id: branch, tag or commit (default main)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_inspect)

    d = sub.add_parser("download", help="download a Hub model (safetensors, config, tokenizer) into the Hugging Face cache "
                                        "for offline use; prints its folder")
    d.add_argument("model", help="Hugging Face Hub id, ORG/NAME")
    d.add_argument("--revision", help="branch, tag or commit (default main)")
    d.set_defaults(func=cmd_download)
