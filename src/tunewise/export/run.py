"""Export a run: merge, GGUF, Ollama Modelfile, verification against the trained model, push to the Hub.

`export_run` is the stage; `tunewise export` (export/cli.py) and `Run.export` (the Python API) call it.
"""

from __future__ import annotations

import re
from pathlib import Path

from tunewise.console import say as _say
from tunewise.export.gguf import GGUF_TYPES


def export_run(run: str | Path, *, dtype: str = "float32", out: str | Path | None = None, gguf: str | None = None,
               ollama: bool = False, name: str | None = None, push: str | None = None, private: bool = False,
               checkpoint: str | None = None, verify_prompts: int = 4, verify_tokens: int = 32,
               merge: bool = True) -> dict:
    """Export a run (the stage behind `tunewise export` and `Run.export`); returns what was written.

    merge=False (with push only): push the run's result as trained (its adapter, or full weights) unmerged.
    """
    from tunewise.errors import RunError
    from tunewise.export import hub
    from tunewise.export.gguf import build_gguf, special_tokens
    from tunewise.export.merge import merge_run
    from tunewise.export.ollama import (
        check_equivalent,
        modelfile_commands,
        ollama_template,
        render_modelfile,
        training_bos,
    )
    from tunewise.faults import crash_point
    from tunewise.fileio import clean_temps, write_text
    from tunewise.runs import RunDir

    run = RunDir.open(run)  # config.yaml and template.json are read once, here, for the whole export
    export_dir = Path(out) if out else run.export
    result: dict = {"export_dir": str(export_dir)}
    if gguf and gguf not in GGUF_TYPES:
        raise RunError(f"unknown GGUF type '{gguf}'", where="--gguf", fix=f"use one of: {', '.join(GGUF_TYPES)}")
    if not merge and (gguf or ollama or checkpoint or not push):
        raise RunError("--no-merge only pushes the run's final result as trained; a GGUF, a Modelfile or a checkpoint "
                       "needs the merged model", where="--no-merge",
                       fix="use --no-merge together with --push and without --gguf/--ollama/--checkpoint")
    if ollama and not gguf:
        gguf = "q8_0"
        _say("[tunewise] --ollama needs a GGUF: using --gguf q8_0")
    if gguf:
        from tunewise.extras import require_extra

        require_extra("export", "a GGUF export")
    template, cfg = run.template, run.config
    intended = None
    if ollama:  # fail before the slow steps when the template has no verified Ollama form
        # A run trained with tools gets the TEMPLATE that carries them (.Tools, .ToolCalls, tool results), checked on
        # the tool probes as well; one without keeps the plain form, so Ollama does not offer tools it never learned.
        go_template = ollama_template(template, tools=run.uses_tools)
        bad = check_equivalent(go_template, template, tools=run.uses_tools)
        if bad:
            raise RunError("the Ollama template does not render like the training template: " + bad[0], where="template.json",
                           fix="report this; export without --ollama meanwhile")
        intended = modelfile_commands(gguf_name="model.gguf", go_template=go_template, stops=template.stop_strings,
                                      generation=cfg.generation, num_ctx=cfg.data.max_length,
                                      system=template.system if template.system is not None else cfg.template.system)
        modelfile_body = render_modelfile(intended)  # refuses a value that would break out of its quoted block
    token = hub.preflight(push) if push else None  # token and network before any work: a refused push writes nothing
    from tunewise.curves.report import result_note

    if checkpoint is None and (note := result_note(run)):
        _say(f"[tunewise] training overfit: {note}")
    if not merge:
        return _push(run, export_dir, result, cfg, push, token, private, kind="unmerged")
    # An export is one consistent set: the previous verdict goes first (a killed export never leaves a PASS
    # beside new files), with the previous Modelfile and GGUF, which would describe the previous weights.
    clean_temps(export_dir)
    for stale in ("verify.json", "Modelfile", "model.gguf"):
        (export_dir / stale).unlink(missing_ok=True)
    model, reference = _trained_model(run, checkpoint, verify_prompts if gguf else 0, verify_tokens)
    _say(f"[tunewise] merging {run} into {export_dir / 'merged'} ({dtype})")
    merged = merge_run(run, export_dir / "merged", dtype=dtype, checkpoint=checkpoint, model=model)
    del model
    result["merged"] = str(merged)
    crash_point("export:merged")
    verdict = None
    if gguf:
        gguf_path = export_dir / "model.gguf"
        _say(f"[tunewise] converting to GGUF {gguf} with llama.cpp's converter -> {gguf_path}")
        build_gguf(merged, gguf_path, gguf, special_tokens(run.tokenizer, template, add_bos=training_bos(template)))
        result["gguf"] = str(gguf_path)
        crash_point("export:gguf")
        modelfile = None
        if ollama:
            modelfile = export_dir / "Modelfile"
            write_text(modelfile, modelfile_body)
            result["modelfile"] = str(modelfile)
        from tunewise.export.verify import verify_gguf, write_verdict

        _say(f"[tunewise] verifying: greedy answers of the GGUF vs the trained model on {verify_prompts} held-out prompts")
        verdict = verify_gguf(run, gguf_path, gguf, modelfile_path=modelfile, n_prompts=verify_prompts,
                              max_new_tokens=verify_tokens, modelfile_intended=intended, reference=reference)
        crash_point("export:verified")
        write_verdict(export_dir / "verify.json", verdict)  # last: only after every file it vouches for exists
        result["verify"], result["verify_json"] = verdict["status"], str(export_dir / "verify.json")
        if ollama:
            model_name = name or re.sub(r"[^a-z0-9._-]+", "-", run.name.lower()).strip("-") or "tunewise-model"
            result["ollama_create"] = f"cd {export_dir} && ollama create {model_name} -f Modelfile"
            print(f"Ollama: {result['ollama_create']}\n        then: ollama run {model_name}")
    if push and verdict and verdict["status"] == "FAIL":
        _say(f"[tunewise] not uploading to {push}: the GGUF failed verification (export/verify.json says why); "
             "fix that, or push without --gguf/--ollama")
    elif push:
        _push(run, export_dir, result, cfg, push, token, private, kind="merged", verdict=verdict)
    print(merged)
    return result


def _trained_model(run, checkpoint, n_prompts: int, max_new_tokens: int):
    """The trained model, loaded once for the whole export (full precision, as merging needs it), and, when the
    export verifies a GGUF, the trained model's answers to the verification prompts, taken before the merge."""
    from tunewise import methods
    from tunewise.export.merge import check_mergeable
    from tunewise.export.verify import hf_reference, reference_prompts
    from tunewise.infer.generate import LoadedModel, pick_threads

    check_mergeable(run)  # before loading anything
    pick_threads(run.config)
    model = methods.load_trained(run, checkpoint=checkpoint, dtype="float32")
    if not n_prompts:
        return model, None
    _say(f"[tunewise] the trained model's answers to {n_prompts} held-out prompts, to verify the GGUF against")
    lm = LoadedModel(model, run.tokenizer, run.template, "tuned")
    return model, hf_reference(lm, reference_prompts(run, n_prompts), max_new_tokens)


def _push(run: Path, export_dir: Path, result: dict, cfg, repo_id: str, token: str, private: bool, *, kind: str,
          verdict: dict | None = None) -> dict:
    from tunewise.export import hub
    from tunewise.fileio import write_text
    from tunewise.methods import result_dir, result_kind

    files = hub.files_to_push(run, result, cfg)
    if kind == "unmerged":
        kind = "model" if result_kind(result_dir(run)) == "model" else "adapter"
    card = hub.model_card(run, repo_id, files=files, kind=kind, verdict=verdict)
    result["card"] = str(write_text(export_dir / "README.md", card))  # the card as sent, kept with the export
    _say(f"[tunewise] uploading {len(files) + 1} files to {repo_id} in one commit")
    result["url"] = hub.push(repo_id, token, files, card, private=private)
    result["pushed"] = sorted([*files, "README.md"])
    print(result["url"])
    return result
