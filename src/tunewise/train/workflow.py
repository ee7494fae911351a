"""The training workflow, top to bottom: config -> data -> template -> model -> method -> train -> save."""

from __future__ import annotations

import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tunewise.config.schema import PREFERENCE_STAGES, Config
from tunewise.console import say as _say
from tunewise.cpu import use_threads
from tunewise.fileio import atomic_path, read_json, read_jsonl, write_json
from tunewise.models.load import model_type_of, tokenizer_and_template
from tunewise.runs import RunDir, newest_checkpoint, run_dir_for
from tunewise.train.assemble import (
    build_trainer,
    fit,
    load_for_training,
    ready_for_training,
)
from tunewise.train.divergence import (
    diverged_error,
    divergence_cause,
    drop_poisoned_checkpoints,
)
from tunewise.train.rundir import metrics_for_resume, prepare_for_run, start_run_dir


@dataclass
class Ready:
    """What preparing a run gives the later steps."""
    run: Path
    main_proc: bool
    world: int
    resume: bool
    method: object  # methods.MethodInfo
    resolved: object  # models.load.ResolvedModel
    tokenizer: object
    template: object
    prepared: object  # data.prepare.PreparedData
    train_ds: object
    val_ds: object


def train(cfg: Config, *, resume: bool = False, overwrite: bool = False, before_fit: Callable | None = None) -> Path:
    """Train a run: prepare it, build the trainer, fit, save. Returns the run directory.

    before_fit(cfg, tokenizer, template, prepared, enc_stats, model_type=, world=) runs on the main process once
    the data is encoded, before any model is loaded: the API and the CLI pass the config lint there
    (advise/lint.py, a stage above this one), whose strict mode refuses to go on by raising.
    """
    ready = prepare_run(cfg, resume=resume or cfg.train.resume, overwrite=overwrite, before_fit=before_fit)
    trainer, plan, metrics_cb = trainer_for_run(cfg, ready)
    result = fit_run(cfg, ready, trainer, plan, metrics_cb)
    return save_run(cfg, ready, trainer, result, metrics_cb)


def prepare_run(cfg: Config, *, resume: bool, overwrite: bool, before_fit: Callable | None) -> Ready:
    """The run directory, threads, tokenizer and template (fixed here for every later stage), the data
    cleaned, split and encoded, and the checks that need them."""
    import torch

    from tunewise import methods
    from tunewise.data.prepare import prepare
    from tunewise.templates.system import describe, settle_system
    from tunewise.train import distributed as dist
    from tunewise.train.data import encode_for_training
    from tunewise.train.optim import machine_optimizer

    info = methods.check_config(cfg)  # a wrong method or incompatible option fails before any work
    if cfg.train.stage in PREFERENCE_STAGES:
        from tunewise.train.preference import check_preference_config

        check_preference_config(cfg)
    machine_optimizer(cfg.train.optimizer)  # e.g. a paged optimiser on a CPU: refused with the reason
    main_proc = dist.is_main()
    if main_proc:
        start_run_dir(cfg, resume=resume, overwrite=overwrite)
    dist_init()
    dist.barrier()
    run = run_dir_for(cfg)
    threads, _ = use_threads(cfg.train.num_threads)
    if main_proc:
        _say(f"[tunewise] {threads.line()}")
    torch.manual_seed(cfg.train.seed)
    resolved, tokenizer, template = tokenizer_and_template(cfg)

    _say(f"[tunewise] preparing data for {run}")
    prepared = prepare_for_run(cfg, run, resume=resume) if main_proc else prepare(cfg, None)  # every rank: the same split
    # The system prompt for conversations without one, decided once from the data and kept in template.json.
    if (note := describe(settle_system(template, cfg.template.system, prepared.train))) and main_proc:
        _say(f"[tunewise] note: {note}")
    if main_proc:
        from tunewise.templates import registry_equivalent

        template.registry = template.registry or registry_equivalent(template)  # its Ollama form's record, for export
        write_json(RunDir(run).template_file, template.to_dict())
    train_ds, val_ds, enc_stats = encode_for_training(cfg, tokenizer, template, prepared)
    if main_proc:
        _write_token_stats(cfg, run, enc_stats, train_ds.lengths)
        if before_fit is not None:  # e.g. the lint: common mistakes, with what training already has in hand
            before_fit(cfg, tokenizer, template, prepared, enc_stats, model_type=model_type_of(cfg, resolved.path),
                       world=dist.world_size())
    return Ready(run, main_proc, dist.world_size(), resume, info, resolved, tokenizer, template, prepared, train_ds,
                 val_ds)


def _write_token_stats(cfg: Config, run: Path, enc_stats: dict, lengths: list[int]) -> None:
    from tunewise.data.report import length_histogram, write_length_histogram

    stats = {**read_json(RunDir(run).stats), "tokens": enc_stats, "length_histogram": length_histogram(lengths)}
    write_json(RunDir(run).stats, stats)
    _print_data_summary(stats)
    if lengths:
        write_length_histogram(lengths, RunDir(run).lengths_png, cfg.data.max_length)


def trainer_for_run(cfg: Config, r: Ready):
    """The model with its method applied and the trainer around it (train/assemble.py), with the run's
    metrics log and progress line. The tokenizer is saved for the result and dropped from memory."""
    from transformers.trainer_callback import ProgressCallback

    from tunewise import methods
    from tunewise.train.callbacks import ConciseProgress, MetricsJsonl

    model = load_for_training(cfg, r.resolved, tokenizer=r.tokenizer, template=r.template)
    check = generation_check(cfg, r.tokenizer, r.template, r.prepared) if r.main_proc or r.world > 1 else None
    # Training never uses the tokenizer again: keep a saved copy for the result, free its memory now
    # (Gemma 3's holds ~300 MB, a tenth of the run's peak).
    pad_id = r.tokenizer.pad_token_id
    if r.main_proc:
        with atomic_path(RunDir(r.run).tokenizer_dir, is_dir=True) as tmp:
            r.tokenizer.save_pretrained(tmp)
    r.tokenizer = None
    ready_for_training(cfg, model, source=r.resolved.path, train_ds=r.train_ds)
    trainable, total = methods.count_parameters(model)
    _say(f"[tunewise] method {r.method.name}: {trainable:,} trainable of {total:,} parameters "
         f"({100 * trainable / max(total, 1):.3f}%)")
    reference = None
    if cfg.train.stage in PREFERENCE_STAGES:
        from tunewise.train.preference import reference_mode

        reference = reference_mode(cfg, peft_result=r.method.peft, continued=r.resolved.previous_run is not None)
    trainer, plan = build_trainer(cfg, model, r.train_ds, r.val_ds, out=r.run, pad_id=pad_id, world=r.world, check=check,
                                  reference=reference)
    metrics_cb = MetricsJsonl(RunDir(r.run).metrics, weakref.ref(trainer))
    trainer.add_callback(metrics_cb)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ConciseProgress())
    return trainer, plan, metrics_cb


def fit_run(cfg: Config, r: Ready, trainer, plan: dict, metrics_cb):
    """The generation check on the untouched model, then training (from the newest complete checkpoint on
    --resume)."""
    t = cfg.train
    ckpt = newest_checkpoint(r.run) if r.resume else None
    # Free disk first, before the generation check and the reference pass take their time; on every process, so
    # that all stop together on a disk too small (one machine: the same disk) instead of waiting on rank 0.
    from tunewise.train.checkpoints import disk_room

    a = trainer.args
    room = disk_room(Path(a.output_dir), trainer.model, adapter_only=r.method.peft, optimizer=t.optimizer,
                     total_steps=plan["total"], save_steps=int(a.save_steps), keep=a.save_total_limit,
                     keeps_best=a.load_best_model_at_end)
    if r.main_proc:
        if room:
            _say(f"[tunewise] warning: {room}")
        metrics_for_resume(r.run, ckpt, r.resume)  # afresh, or cut back to the checkpoint resumed
    if trainer.generation_check is not None:
        _check_before_training(trainer.generation_check, trainer.model, r.run, ckpt is not None,
                               metrics_cb if r.main_proc else None)
        trainer.generation_check.start_clock()
    if getattr(trainer, "reference", None) == "precomputed":
        # from the model as training starts (before a resumed checkpoint's weights are loaded): the reference
        _say(f"[tunewise] {t.stage}: the reference model's log-probabilities, computed once for "
             f"{len(r.train_ds) + len(r.val_ds)} examples (no second copy of the model)")
        trainer.precompute_reference([r.train_ds, r.val_ds])
    elif getattr(trainer, "reference", None) == "adapter_off":
        _say(f"[tunewise] {t.stage}: the reference is the model with the adapter switched off (no second copy)")
    epochs = "" if t.max_steps else (f", {plan['epochs']:g} passes" + (f" (auto: at least {t.min_steps} steps)"
                                                                       if plan["auto_epochs"] else ""))
    _say(f"[tunewise] training {plan['total']} steps ({len(r.train_ds)} examples, effective batch "
         f"{plan['per_step']}{epochs})")
    return fit(cfg, trainer, plan["total"], ckpt)


def save_run(cfg: Config, r: Ready, trainer, result, metrics_cb) -> Path:
    """The result (atomically: a failed run never leaves a half-written adapter), train_summary.json, the
    stamp and the learning-curve verdict; a diverged run ends in its error."""
    from tunewise import methods
    from tunewise.stamp import stamp

    check = trainer.generation_check
    trainable, total = methods.count_parameters(trainer.model)
    summary = {"global_step": trainer.state.global_step, "train_loss": result.training_loss,
               "train_runtime_s": result.metrics.get("train_runtime"),
               "best_checkpoint": trainer.state.best_model_checkpoint, **_best_losses(trainer, check is not None),
               "diverged_at_step": trainer.nan_step, "trainable_parameters": trainable, "total_parameters": total,
               "method": r.method.name, "base_model": str(r.resolved.path), "model_alias": r.resolved.alias,
               "vocab_size": _vocab_size(trainer.model),
               # as trained: train.gradient_checkpointing: auto decides per run (train/assemble.checkpointing_choice)
               "gradient_checkpointing": bool(getattr(trainer.model, "is_activation_checkpointing", False))}
    if len(r.val_ds) > 0 and trainer.nan_step is None:
        logged = logged_best_eval(trainer, check)
        if logged is None:
            if check is not None:
                check.force_next = True  # the saved model's rates are measured, never carried from another step
            summary["final_val_loss"] = trainer.evaluate()["eval_loss"]
        else:  # the saved weights are the best checkpoint's, measured when it was saved: not measured again
            summary["final_val_loss"] = logged["eval_loss"]
            if r.main_proc:
                metrics_cb.write_final(logged, trainer.state)
    if check is not None:  # what the generation check cost (train.generation_check_budget), counted in this process
        summary["generation_checks"] = {"measured": check.measured, "carried_for_budget": check.skipped,
                                        "seconds": round(check.spent, 1)}
        if r.main_proc and (line := check.cost_line(summary["train_runtime_s"])):
            _say(f"[tunewise] {line}")
    if not r.main_proc:
        return r.run
    run = r.run
    if trainer.nan_step is None:
        out = RunDir(run).adapter if r.method.peft else RunDir(run).model
        with atomic_path(out, is_dir=True) as tmp:
            methods.save_result(r.method, trainer.model, tmp)
            shutil.copytree(RunDir(run).tokenizer_dir, tmp, dirs_exist_ok=True)
        summary["result"] = str(out)
    else:
        good = drop_poisoned_checkpoints(run, trainer.nan_step)
        summary["last_good_checkpoint"] = str(good.relative_to(run)) if good else None
    write_json(RunDir(run).summary, summary)
    stamp(run)
    verdict = _finish_curves(run)
    if trainer.nan_step is not None:
        raise diverged_error(run, f"the loss became NaN/inf at step {trainer.nan_step}", newest_checkpoint(run))
    if verdict.verdict == "diverged":
        raise diverged_error(run, "the loss " + divergence_cause(verdict.evidence), None, saved_after=True)
    return run


def _best_losses(trainer, guarded: bool) -> dict:
    """The best checkpoint's validation loss (and, when the generation check chose it, its guarded loss)."""
    best = trainer.state.best_metric
    if not guarded:
        return {"best_val_loss": best}
    ckpt = trainer.state.best_model_checkpoint
    step = int(str(ckpt).rsplit("-", 1)[-1]) if ckpt else None
    val = next((h["eval_loss"] for h in trainer.state.log_history if h.get("step") == step and "eval_loss" in h), None)
    return {"best_val_loss": val, "best_guarded_val_loss": best}


def generation_check(cfg: Config, tokenizer, template, prepared):
    """The periodic generation check of this run (train/behaviour.py), or None when it does not apply."""
    from tunewise.train.behaviour import GenerationCheck, build_probe

    t = cfg.train
    if not t.generation_check or t.stage == "pretrain" or not prepared.val:
        return None
    # a preference run's answers are checked against the chosen (kto: the desirable) answers
    val = [r for r in prepared.val if r.get("label", True) is not False]
    probe = build_probe(val, prepared.train, tokenizer, template, samples=t.generation_check_samples,
                        seed=t.seed, max_new_tokens=t.generation_check_max_new_tokens)
    if probe is None:
        return None
    return GenerationCheck(probe, tokenizer, every=t.generation_check_every, budget=t.generation_check_budget,
                           batch_size=cfg.eval.batch_size)


def _check_before_training(check, model, run: Path, resume: bool, metrics_cb) -> None:
    """Measure the untouched model once (on resume: take its key terms from the first run's record)."""
    if resume:
        metrics = RunDir(run).metrics
        rows = [r for _, r in read_jsonl(metrics)] if metrics.exists() else []
        first = next((r for r in rows if r.get("event") == "before_training"), None)
        if first is not None:
            check.probe.key_terms = list(first.get("key_terms", []))
            return
    _say(f"[tunewise] generation check: {len(check.probe.prompts)} validation prompts, up to "
         f"{check.probe.max_new_tokens} new tokens, before training and at evaluations"
         + (f" (at most {check.budget:.0%} of the training time, except at evaluations that could become the best "
            f"while answers misbehave: train.generation_check_budget)"
            if check.budget < 1 else ""))
    rates = check.before_training(model)
    if metrics_cb is not None:
        metrics_cb.write_before_training(rates, check.probe.key_terms)


def logged_best_eval(trainer, check) -> dict | None:
    """The evaluation logged at the best checkpoint's step, when it scored exactly the weights the run saves
    (the best model is loaded at the end) with a fresh generation check; None when it must be measured again
    (its rates were carried forward from an earlier check, or it was measured before a resume)."""
    ckpt = trainer.state.best_model_checkpoint
    if not ckpt or not trainer.args.load_best_model_at_end:
        return None
    step = int(str(ckpt).rsplit("-", 1)[-1])
    if check is not None and step not in getattr(trainer, "gen_fresh_steps", ()):
        return None
    row = next((h for h in reversed(trainer.state.log_history) if h.get("step") == step and "eval_loss" in h), None)
    if row is None or (check is not None and "gen_stop_rate" not in row):
        return None
    return row


def _vocab_size(model) -> int | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(head.weight.shape[0]) if head is not None and hasattr(head, "weight") else None


def dist_init() -> None:
    """Initialise torch.distributed early (Trainer would too) so ranks can wait for rank 0's setup."""
    from tunewise.train import distributed as dist

    if dist.world_size() > 1:
        import torch
        import torch.distributed as td

        if not td.is_initialized():
            td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def _print_data_summary(stats: dict) -> None:
    from tunewise.data.report import format_summary

    _say("[tunewise] " + format_summary(stats))


def _finish_curves(run: Path):
    from tunewise.curves.report import analyze_run, format_diagnosis

    d = analyze_run(run)
    _say("[tunewise] " + format_diagnosis(d, "en"))
    return d
