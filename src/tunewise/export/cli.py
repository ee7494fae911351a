"""`tunewise export RUN`: merged model, optional GGUF + verification, Ollama Modelfile, Hub push."""

from __future__ import annotations

from tunewise.export.gguf import GGUF_TYPES
from tunewise.export.merge import DTYPES


def cmd_export(a) -> int:
    from tunewise.api import Run
    from tunewise.runs import allow_remote_code

    allow_remote_code(a.trust_remote_code)
    res = Run(a.run).export(dtype=a.dtype, out=a.out, gguf=a.gguf, ollama=a.ollama, name=a.name, push=a.push,
                            private=a.private, checkpoint=a.checkpoint, verify_prompts=a.verify_prompts,
                            verify_tokens=a.verify_tokens, merge=not a.no_merge)
    return 1 if res.get("verify") == "FAIL" else 0


def register(sub) -> None:
    e = sub.add_parser("export", help="merge the result into a standalone model; GGUF, Ollama Modelfile, Hub push; verified")
    e.add_argument("run", help="run directory")
    e.add_argument("--dtype", choices=list(DTYPES), default="float32", help="dtype of the merged safetensors weights")
    e.add_argument("--out", help="export folder (default: RUN/export); the merged model goes to OUT/merged")
    e.add_argument("--gguf", choices=list(GGUF_TYPES), help="also write OUT/model.gguf of this type (llama.cpp), then verify it")
    e.add_argument("--ollama", action="store_true", help="also write an Ollama Modelfile (implies --gguf q8_0 when no type is given)")
    e.add_argument("--name", help="model name in the printed `ollama create` command (default: the run name)")
    e.add_argument("--push", metavar="REPO_ID", help="upload to the Hugging Face Hub with a model card")
    e.add_argument("--private", action="store_true", help="--push: create the repository as private")
    e.add_argument("--no-merge", action="store_true", help="--push: upload the run's result as trained (the adapter of an "
                   "adapter run) instead of merging it into the base")
    e.add_argument("--checkpoint", help="export this checkpoint instead of the final result")
    e.add_argument("--verify-prompts", type=int, default=4, help="held-out prompts compared during verification")
    e.add_argument("--verify-tokens", type=int, default=32, help="greedy tokens generated per prompt during verification")
    from tunewise.cli import add_trust_remote_code

    add_trust_remote_code(e)
    e.set_defaults(func=cmd_export)
