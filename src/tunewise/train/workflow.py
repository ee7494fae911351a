"""The training workflow, top to bottom: config -> data -> template -> model -> method -> train -> save."""

from __future__ import annotations

import shutil
import sys
import weakref
from pathlib import Path
from typing import Callable

from tunewise.config.plan import checkpoint_interval, steps_plan
from tunewise.config.schema import Config
from tunewise.cpu import use_threads
from tunewise.fileio import atomic_path, read_json, read_jsonl, write_json
from tunewise.models.load import model_type_of, tokenizer_and_template
from tunewise.runs import newest_checkpoint, run_dir_for
from tunewise.train.checkpoints import train_or_finish
from tunewise.train.divergence import divergence_cause, diverged_error, drop_poisoned_checkpoints
from tunewise.train.rundir import metrics_for_resume, prepare_for_run, start_run_dir


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def precision_flags(precision: str) -> dict:
    import torch

    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(cfg: Config, run: Path, plan: dict, has_val: bool, guarded: bool = False):
    """transformers TrainingArguments for this config (every knob the guides describe maps here)."""
    import torch
    from transformers import TrainingArguments

    from tunewise.train import distributed as dist
    from tunewise.train import optim

    t = cfg.train
    return TrainingArguments(
        output_dir=str(run / "checkpoints"),
        learning_rate=t.learning_rate, num_train_epochs=plan["epochs"], max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.per_device_batch_size, per_device_eval_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=plan["accum"], lr_scheduler_type=t.lr_scheduler,
        lr_scheduler_kwargs=_scheduler_kwargs(t), warmup_steps=t.warmup_steps if t.warmup_steps > 0 else t.warmup_ratio,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, seed=t.seed, data_seed=t.seed,
        logging_steps=t.logging_steps, logging_first_step=True, logging_nan_inf_filter=False,
        eval_strategy="steps" if has_val else "no", eval_steps=plan["eval_steps"],
        save_strategy="steps", save_steps=_save_steps(t.save_steps, plan, has_val), save_total_limit=t.save_total_limit,
        load_best_model_at_end=has_val, metric_for_best_model="eval_guarded_loss" if guarded else "eval_loss",
        greater_is_better=False,
        report_to=["tensorboard"], prediction_loss_only=True, remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if t.group_by_length and not t.packing else "random", dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False, save_only_model=False,
        restore_callback_states_from_checkpoint=True,  # early stopping's patience count survives a resume
        neftune_noise_alpha=t.neftune_alpha, **precision_flags(t.precision), **(dist.trainer_kwargs(cfg.distributed) if dist.world_size() > 1 else {}),
        **optim.training_kwargs(t),
    )


def _save_steps(save_steps: int | None, plan: dict, has_val: bool) -> int:
    steps, note = checkpoint_interval(save_steps, plan["eval_steps"], has_val)
    if note:
        _say(f"[tunewise] warning: {note}")
    return steps


def train(cfg: Config, *, resume: bool = False, overwrite: bool = False, before_fit: Callable | None = None) -> Path:
    """Train a run: prepare it, build the trainer, fit, save. Returns the run directory.

    before_fit(cfg, tokenizer, template, prepared, enc_stats, model_type=, world=) runs on the main process once
    the data is encoded, before any model is loaded: the API and the CLI pass the config lint there
    (advise/lint.py, a stage above this one), whose strict mode refuses to go on by raising.
    """
    import torch
    from transformers import EarlyStoppingCallback

    from tunewise import methods
    from tunewise.data.prepare import prepare
    from tunewise.models.load import load_model
    from tunewise.train.callbacks import MetricsJsonl
    from tunewise.train.collate import PackCollator, PadCollator
    from tunewise.train.data import encode_for_training
    from tunewise.train.optim import machine_optimizer
    from tunewise.train.trainer import TunewiseTrainer, flush_denormals
    from tunewise.stamp import stamp
    from tunewise.templates.system import describe, settle_system

    from tunewise.train import distributed as dist

    resume = resume or cfg.train.resume
    info = methods.check_config(cfg)  # a wrong method or incompatible option fails before any work
    machine_optimizer(cfg.train.optimizer)  # e.g. a paged optimiser on a CPU: refused with the reason
    main_proc = dist.is_main()
    if main_proc:
        run = start_run_dir(cfg, resume=resume, overwrite=overwrite)
    dist_init()
    dist.barrier()
    run = run_dir_for(cfg)
    threads, _ = use_threads(cfg.train.num_threads)
    if main_proc:
        _say(f"[tunewise] {threads.line()}")
    torch.manual_seed(cfg.train.seed)

    # 1. model + tokenizer + template (the template is fixed here, for every later stage)
    resolved, tokenizer, template = tokenizer_and_template(cfg)

    # 2. data: records -> cleaned split -> tokens
    _say(f"[tunewise] preparing data for {run}")
    prepared = prepare_for_run(cfg, run, resume=resume) if main_proc else prepare(cfg, None)  # every rank: the same split
    # The system prompt for conversations without one, decided once from the data and kept in template.json.
    if (note := describe(settle_system(template, cfg.template.system, prepared.train))) and main_proc:
        _say(f"[tunewise] note: {note}")
    if main_proc:
        write_json(run / "template.json", template.to_dict())
    train_ds, val_ds, enc_stats = encode_for_training(cfg, tokenizer, template, prepared, previous_run=resolved.previous_run)
    enc_lengths = [len(e.input_ids) for e in train_ds.examples]
    if main_proc:
        from tunewise.data.report import length_histogram, write_length_histogram

        stats = {**read_json(run / "data" / "stats.json"), "tokens": enc_stats,
                 "length_histogram": length_histogram(enc_lengths)}
        write_json(run / "data" / "stats.json", stats)
        _print_data_summary(stats)
        if enc_lengths:
            write_length_histogram(enc_lengths, run / "data" / "lengths.png", cfg.data.max_length)
        if before_fit is not None:  # e.g. the lint: common mistakes, with what training already has in hand
            before_fit(cfg, tokenizer, template, prepared, enc_stats, model_type=model_type_of(cfg, resolved.path),
                       world=dist.world_size())

    # 3. model + method (a previous run's adapter is continued or folded in by the method rules)
    extra = methods.base_load_kwargs(info, cfg)
    extra.update(dropout_overrides(cfg.model, resolved.path))
    model = load_model(resolved.path, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code,
                       attn=cfg.model.attn_implementation, **extra)
    model = methods.apply_method(cfg, model, previous_run=resolved.previous_run, tokenizer=tokenizer, template=template)
    check = generation_check(cfg, tokenizer, template, prepared) if main_proc or dist.world_size() > 1 else None
    # Training never uses the tokenizer again: keep a saved copy for the result, free its memory now
    # (Gemma 3's holds ~300 MB, a tenth of the run's peak).
    pad_id, tokenizer_files = tokenizer.pad_token_id, run / "data" / "tokenizer"
    if main_proc:
        with atomic_path(tokenizer_files, is_dir=True) as tmp:
            tokenizer.save_pretrained(tmp)
    del tokenizer
    ready_for_training(cfg, model)
    trainable, total = methods.count_parameters(model)
    _say(f"[tunewise] method {info.name}: {trainable:,} trainable of {total:,} parameters ({100 * trainable / max(total, 1):.3f}%)")

    # 4. trainer
    plan = steps_plan(cfg, len(train_ds), dist.world_size())
    t = cfg.train
    has_val = len(val_ds) > 0
    check = check if has_val else None
    args = training_arguments(cfg, run, plan, has_val, guarded=check is not None)
    callbacks = []
    if has_val and t.early_stopping:
        callbacks.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
    collator = PackCollator() if t.packing else PadCollator(pad_id)
    trainer = TunewiseTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds if has_val else None,
                              data_collator=collator, callbacks=callbacks, fast_loss=t.fast_loss, loss_chunk_size=t.loss_chunk_size,
                              l1=t.l1, l2=t.l2, generation_check=check)
    metrics_cb = MetricsJsonl(run / "metrics.jsonl", weakref.ref(trainer))
    trainer.add_callback(metrics_cb)
    from transformers.trainer_callback import ProgressCallback

    from tunewise.train.callbacks import ConciseProgress

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ConciseProgress())

    # 5. train (from the newest complete checkpoint on --resume)
    ckpt = newest_checkpoint(run) if resume else None
    if main_proc:
        metrics_for_resume(run, ckpt, resume)  # afresh, or cut back to the checkpoint resumed
    if check is not None:
        _check_before_training(check, model, run, ckpt is not None, metrics_cb if main_proc else None)
    epochs = "" if t.max_steps else (f", {plan['epochs']:g} passes" + (f" (auto: at least {t.min_steps} steps)"
                                                                       if plan["auto_epochs"] else ""))
    _say(f"[tunewise] training {plan['total']} steps ({len(train_ds)} examples, effective batch {plan['per_step']}{epochs})")
    with flush_denormals(t.flush_denormal):
        result = train_or_finish(trainer, ckpt, plan["total"])

    # 6. save (atomically: a failed run never leaves a half-written adapter)
    summary = {"global_step": trainer.state.global_step, "train_loss": result.training_loss,
               "train_runtime_s": result.metrics.get("train_runtime"),
               "best_checkpoint": trainer.state.best_model_checkpoint, **_best_losses(trainer, check is not None),
               "diverged_at_step": trainer.nan_step, "trainable_parameters": trainable, "total_parameters": total,
               "method": info.name, "base_model": str(resolved.path), "model_alias": resolved.alias,
               "vocab_size": _vocab_size(trainer.model)}
    if has_val and trainer.nan_step is None:
        logged = logged_best_eval(trainer, check)
        if logged is None:
            summary["final_val_loss"] = trainer.evaluate()["eval_loss"]
        else:  # the saved weights are the best checkpoint's, measured when it was saved: not measured again
            summary["final_val_loss"] = logged["eval_loss"]
            if main_proc:
                metrics_cb.write_final(logged, trainer.state)
    if not main_proc:
        return run
    if trainer.nan_step is None:
        out = run / ("adapter" if info.peft else "model")
        with atomic_path(out, is_dir=True) as tmp:
            methods.save_result(info, trainer.model, tmp)
            shutil.copytree(tokenizer_files, tmp, dirs_exist_ok=True)
        summary["result"] = str(out)
    else:
        good = drop_poisoned_checkpoints(run, trainer.nan_step)
        summary["last_good_checkpoint"] = str(good.relative_to(run)) if good else None
    write_json(run / "train_summary.json", summary)
    stamp(run, cfg)
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
    if not t.generation_check or t.stage != "sft" or not prepared.val:
        return None
    probe = build_probe(prepared.val, prepared.train, tokenizer, template, samples=t.generation_check_samples,
                        seed=t.seed, max_new_tokens=t.generation_check_max_new_tokens)
    return None if probe is None else GenerationCheck(probe, tokenizer, every=t.generation_check_every,
                                                      batch_size=cfg.eval.batch_size)


def _check_before_training(check, model, run: Path, resume: bool, metrics_cb) -> None:
    """Measure the untouched model once (on resume: take its key terms from the first run's record)."""
    if resume:
        rows = [r for _, r in read_jsonl(run / "metrics.jsonl")] if (run / "metrics.jsonl").exists() else []
        first = next((r for r in rows if r.get("event") == "before_training"), None)
        if first is not None:
            check.probe.key_terms = list(first.get("key_terms", []))
            return
    _say(f"[tunewise] generation check: {len(check.probe.prompts)} validation prompts, up to "
         f"{check.probe.max_new_tokens} new tokens, before training and at evaluations")
    rates = check.before_training(model)
    if metrics_cb is not None:
        metrics_cb.write_before_training(rates, check.probe.key_terms)


def logged_best_eval(trainer, check) -> dict | None:
    """The evaluation logged at the best checkpoint's step, when it scored exactly the weights the run saves
    (the best model is loaded at the end) with a fresh generation check; None when it must be measured again."""
    ckpt = trainer.state.best_model_checkpoint
    if not ckpt or not trainer.args.load_best_model_at_end or (check is not None and check.every != 1):
        return None
    step = int(str(ckpt).rsplit("-", 1)[-1])
    row = next((h for h in reversed(trainer.state.log_history) if h.get("step") == step and "eval_loss" in h), None)
    if row is None or (check is not None and "gen_stop_rate" not in row):
        return None
    return row


def _vocab_size(model) -> int | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(head.weight.shape[0]) if head is not None and hasattr(head, "weight") else None


def ready_for_training(cfg: Config, model) -> None:
    """The last touches to a loaded model with its method applied (and the tokenizer already dropped):
    frozen weights narrowed (train.frozen_dtype), freed memory handed back, gradient checkpointing."""
    from tunewise.methods.tokenrows import speed_up
    from tunewise.train.trainer import release_memory

    speed_up(model)  # trainable token rows (method.train_stop_tokens) without copying the vocabulary matrix
    if cfg.train.frozen_dtype != "float32":
        from tunewise.train.narrow import narrow_frozen

        saved = narrow_frozen(model, cfg.train.frozen_dtype)
        _say(f"[tunewise] frozen weights kept in {cfg.train.frozen_dtype}: {saved / 2**20:,.0f} MiB less memory")
    release_memory()
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()


_DROPOUT_ATTRS = {
    "attention_dropout": ("attention_dropout", "attn_pdrop", "attention_probs_dropout_prob"),
    "hidden_dropout": ("hidden_dropout", "resid_pdrop", "hidden_dropout_prob", "embd_pdrop", "dropout"),
}


def dropout_overrides(mcfg, model_path) -> dict:
    """Config kwargs that set the model's own dropout, where its architecture has such a field."""
    from transformers import AutoConfig

    wanted = {k: getattr(mcfg, k) for k in _DROPOUT_ATTRS if getattr(mcfg, k) is not None}
    if not wanted:
        return {}
    from tunewise.models.load import remote_code_refused

    with remote_code_refused(model_path):
        conf = AutoConfig.from_pretrained(model_path, trust_remote_code=mcfg.trust_remote_code)
    out = {}
    for key, value in wanted.items():
        present = [a for a in _DROPOUT_ATTRS[key] if hasattr(conf, a)]
        if not present:
            _say(f"[tunewise] warning: model.{key}={value} ignored: {conf.model_type} has no such dropout "
                 f"(use method.lora_dropout or train.weight_decay to regularise)")
        for a in present:
            out[a] = value
    return out


def dist_init() -> None:
    """Initialise torch.distributed early (Trainer would too) so ranks can wait for rank 0's setup."""
    from tunewise.train import distributed as dist

    if dist.world_size() > 1:
        import torch
        import torch.distributed as td

        if not td.is_initialized():
            td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def _scheduler_kwargs(t) -> dict:
    if t.lr_scheduler == "cosine_with_restarts":
        return {"num_cycles": t.scheduler_cycles}
    if t.lr_scheduler == "polynomial":
        return {"power": 1.0, "lr_end": 1e-7}
    return {}


def _print_data_summary(stats: dict) -> None:
    from tunewise.data.report import format_summary

    _say("[tunewise] " + format_summary(stats))


def _finish_curves(run: Path):
    from tunewise.curves.report import analyze_run, format_diagnosis

    d = analyze_run(run)
    _say("[tunewise] " + format_diagnosis(d, "en"))
    return d
