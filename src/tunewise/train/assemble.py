"""One trainer assembly: the model loaded for training, the Trainer built, the fit run.

`tunewise train` (train/workflow.py), advise's measured memory (advise/measure.py) and the tests call these, so
a setting that changes how training runs (dropout, L1/L2, packing, denormal flushing, ...) changes it in all
of them at once.
"""

from __future__ import annotations

from pathlib import Path

from tunewise.config.plan import checkpoint_interval, packs, steps_plan
from tunewise.config.schema import PREFERENCE_STAGES, Config
from tunewise.console import say as _say
from tunewise.runs import RunDir


def load_for_training(cfg: Config, resolved, *, tokenizer=None, template=None):
    """The base model loaded as the method wants it (quantised, dropout set), with the method applied
    (a previous run's adapter continued or folded in), ready for the Trainer."""
    from tunewise import methods
    from tunewise.models.load import load_model

    info = methods.get(cfg.method.name)
    extra = methods.base_load_kwargs(info, cfg)
    extra.update(dropout_overrides(cfg.model, resolved.path))
    narrow = loads_narrow(cfg, resolved)
    model = load_model(resolved.path, dtype="bfloat16" if narrow else cfg.model.dtype,
                       trust_remote_code=cfg.model.trust_remote_code, attn=cfg.model.attn_implementation, **extra)
    if narrow:
        from tunewise.train.narrow import widen_all_but_matrices

        widen_all_but_matrices(model)
    return methods.apply_method(cfg, model, previous_run=resolved.previous_run, tokenizer=tokenizer, template=template)


def loads_narrow(cfg: Config, resolved) -> bool:
    """Whether a LoRA run loads its base as the checkpoint stores it, in bfloat16, instead of widening every weight
    to float32 first (model.dtype: auto on a CPU). Only the weight matrices stay narrow (train/narrow.py computes
    with them widened); the rest is made float32 right after loading. Without this a bf16 checkpoint passes
    through a float32 copy of the whole model: Qwen2.5-1.5B's 3.1 GB file peaks at 9.2 GB while it loads.
    Not for a continued run (its adapter loads on the float32 path as before), nor for remote code (the buffers
    are rebuilt from the config, which would run that code again)."""
    import torch

    from tunewise.models.load import stored_dtype

    if cfg.model.dtype != "auto" or cfg.method.name != "lora" or resolved.previous_run is not None \
            or torch.cuda.is_available() or cfg.train.frozen_dtype == "float32" or cfg.model.trust_remote_code:
        return False
    return stored_dtype(resolved.path) == "bfloat16"


def load_prepared(cfg: Config):
    """The training examples encoded and the model loaded and made ready, as `tunewise train` has them before its
    Trainer is built (tokenizer dropped, frozen weights narrowed, checkpointing on): what advise's measurements
    and the benchmarks train on. Returns (training dataset, model, pad token id)."""
    from tunewise.models.load import tokenizer_and_template
    from tunewise.data.prepare import prepare
    from tunewise.train.data import encode_for_training

    resolved, tok, tpl = tokenizer_and_template(cfg)
    train_ds, _val, _ = encode_for_training(cfg, tok, tpl, prepare(cfg, None))
    model = load_for_training(cfg, resolved, tokenizer=tok, template=tpl)
    pad_id = tok.pad_token_id
    del tok
    ready_for_training(cfg, model, source=resolved.path, train_ds=train_ds)
    return train_ds, model, pad_id


def build_trainer(cfg: Config, model, train_ds, val_ds=None, *, out: Path, pad_id: int | None, world: int = 1,
                  check=None, report: bool = True, reference: str | None = None):
    """The TunewiseTrainer of this config: arguments, collator, early stopping, L1/L2, generation check; for a
    preference stage the PreferenceTrainer (reference: train/preference.reference_mode).
    Returns (trainer, the step plan). out: where checkpoints go (out/checkpoints)."""
    from transformers import EarlyStoppingCallback

    from tunewise.cpu import current_choice

    from tunewise.train.collate import PackCollator, PackingCost, PadCollator, rounds_rows
    from tunewise.train.trainer import TunewiseTrainer

    t = cfg.train
    plan = steps_plan(cfg, len(train_ds), world)
    has_val = val_ds is not None and len(val_ds) > 0
    check = check if has_val else None
    from tunewise.train.precision import resolve

    precision = resolve(t.precision, model, world=world)
    if report and t.precision == "auto":
        _say(f"[tunewise] {precision.line()}")
    args = training_arguments(cfg, out, plan, has_val, guarded=check is not None, precision=precision)
    if not report:
        args.report_to = []
    callbacks = []
    if has_val and t.early_stopping:
        callbacks.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
    if (choice := current_choice()) is not None and choice.source == "measured":
        from tunewise.console import say
        from tunewise.cpu import ThreadWatch
        from tunewise.train.callbacks import FollowFreeCores

        callbacks.append(FollowFreeCores(ThreadWatch(choice, say=say)))
    common = dict(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds if has_val else None,
                  callbacks=callbacks, fast_loss=t.fast_loss, loss_chunk_size=t.loss_chunk_size, l1=t.l1, l2=t.l2,
                  generation_check=check)
    if t.stage in PREFERENCE_STAGES:
        from tunewise.train.preference import PreferenceCollator, PreferenceTrainer

        shared = shared_prefix_for(cfg, model) if t.stage != "kto" and packs_pairs(cfg) else None
        collator = PreferenceCollator(pad_id, shared=shared,
                                      cost=PackingCost.of(model, cfg.model.trust_remote_code) if shared else None)
        trainer = PreferenceTrainer(**common, data_collator=collator, stage=t.stage, pref=cfg.preference,
                                    reference=reference)
        return trainer, plan
    if packing_for(cfg, model):
        collator = PackCollator(pad_id, rounds_rows(precision.precision, next(model.parameters()).device.type),
                                cost=PackingCost.of(model, cfg.model.trust_remote_code) if t.packing == "auto" else None,
                                shared=shared_prefix_for(cfg, model))
    else:
        collator = PadCollator(pad_id)
    trainer = TunewiseTrainer(**common, data_collator=collator)
    return trainer, plan


def packing_for(cfg: Config, model) -> bool:
    """Whether this run packs its batches (config.plan.packs), once the loaded model is checked to attend within
    examples only: 'auto' falls back to padded batches with a note, an explicit true is refused."""
    if not packs(cfg):
        return False
    from tunewise.train.collate import packed_attention_is_exact

    if packed_attention_is_exact(model):
        return True
    if cfg.train.packing is True:
        from tunewise.errors import ConfigError

        raise ConfigError("train.packing is true, but this model attends across the examples of a packed row "
                          "(its attention ignores the restarting position_ids)", where="train.packing",
                          fix="set train.packing: false (or auto), or model.attn_implementation: sdpa")
    _say("[tunewise] note: batches are padded, not packed: this model's attention would cross the examples of a "
         "packed row (train.packing: auto)")
    return False


def packs_pairs(cfg: Config) -> bool:
    """Whether a preference run may put a batch's pairs into one shared-prefix row: train.packing not false, and a
    method without virtual tokens (their key/value cache comes before every row)."""
    from tunewise.config.methods import FACTS

    facts = FACTS.get(cfg.method.name)
    return cfg.train.packing is not False and not (facts and facts.virtual_tokens)


def shared_prefix_for(cfg: Config, model):
    """train/collate.SharedPrefix for a packing SFT run whose model reads a shared-prefix row exactly, or None."""
    from tunewise.train.collate import shared_for

    if cfg.train.stage == "pretrain" or cfg.data.train_on_prompt or cfg.model.attn_implementation != "sdpa":
        return None  # every token is a target (no beginning is shared unscored), or an attention without bool masks
    return shared_for(model)


def fit(cfg: Config, trainer, total_steps: int, checkpoint=None):
    """Train (from `checkpoint` when resuming) with denormals flushed as train.flush_denormal says."""
    from tunewise.train.checkpoints import train_or_finish
    from tunewise.train.trainer import flush_denormals

    with flush_denormals(cfg.train.flush_denormal):
        return train_or_finish(trainer, checkpoint, total_steps)


def training_arguments(cfg: Config, run: Path, plan: dict, has_val: bool, guarded: bool = False, precision=None):
    """transformers TrainingArguments for this config (every knob the guides describe maps here). precision: the
    run's train/precision.PrecisionChoice (default: train.precision resolved without a model, fp32 for auto on a CPU)."""
    import torch
    from transformers import TrainingArguments

    from tunewise.train import distributed as dist
    from tunewise.train import optim
    from tunewise.train.precision import flags, resolve

    t = cfg.train
    return TrainingArguments(
        output_dir=str(RunDir(run).checkpoints),
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
        train_sampling_strategy="group_by_length" if t.group_by_length and not packs(cfg) else "random", dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False, save_only_model=False,
        restore_callback_states_from_checkpoint=True,  # early stopping's patience count survives a resume
        neftune_noise_alpha=t.neftune_alpha, **flags(precision or resolve(t.precision)), **(dist.trainer_kwargs(cfg.distributed) if dist.world_size() > 1 else {}),
        **optim.training_kwargs(t),
    )


def _save_steps(save_steps: int | None, plan: dict, has_val: bool) -> int:
    steps, note = checkpoint_interval(save_steps, plan["eval_steps"], has_val)
    if note:
        _say(f"[tunewise] warning: {note}")
    return steps


def ready_for_training(cfg: Config, model, source: Path | None = None, train_ds=None) -> None:
    """The last touches to a loaded model with its method applied (and the tokenizer already dropped):
    frozen weights narrowed (train.frozen_dtype), freed memory handed back, gradient checkpointing.
    source: the base model's folder (its checkpoint's dtype decides train.frozen_dtype: auto); train_ds: the
    encoded training examples (their longest row and supervised share size train.gradient_checkpointing: auto)."""
    from tunewise.methods.tokenrows import speed_up
    from tunewise.models.load import stored_dtype
    from tunewise.train.narrow import narrow_frozen, widen_the_rest
    from tunewise.train.trainer import release_memory

    speed_up(model)  # trainable token rows (method.train_stop_tokens) without copying the vocabulary matrix
    stored = stored_dtype(source) if source is not None else None
    frozen = resolved_frozen_dtype(cfg, model, stored)
    if frozen != "float32":
        saved = narrow_frozen(model, frozen)
        auto = ""
        if cfg.train.frozen_dtype == "auto":
            auto = (" (auto: the checkpoint stores them in bfloat16, so no value changes)" if stored == "bfloat16"
                    else " (auto: training runs in bf16 mixed precision)")
        _say(f"[tunewise] frozen weights kept in {frozen}{auto}: {saved / 2**20:,.0f} MiB less memory than float32")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "tunewise_loaded_narrow", False):
        widen_the_rest(model)  # what the method added narrow on a narrow load, and no narrow module holds: float32
    release_memory()
    on, why = checkpointing_choice(cfg, model, stored, train_ds)
    if why:
        _say(f"[tunewise] gradient checkpointing {why}")
    if on:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        returns_freed_memory()
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()


def checkpointing_choice(cfg: Config, model, stored: str | None, train_ds=None, hw=None) -> tuple[bool, str]:
    """train.gradient_checkpointing with 'auto' resolved for this model, data and machine: (on, why; "" when set).

    auto asks train/memory.auto_checkpointing (the rule `tunewise advise` applies) with this run's estimate at the
    configured batch and the longest training row, against what this process may use: the RAM free now plus what
    it already holds (its weights are loaded), shared by the processes of a multi-process run, or the GPU's memory.
    Every process takes the same choice: on if any of them wants it. hw: a tunewise.hardware.Hardware to decide
    for instead of this machine as it is now (its available_ram_bytes is then taken as this process's whole share)."""
    t = cfg.train
    if t.gradient_checkpointing != "auto":
        return bool(t.gradient_checkpointing), ""
    if cfg.method.name == "prefix":
        return False, "auto: off (prefix tuning feeds a key/value cache, which cannot be recomputed)"
    from tunewise.train import distributed as dist
    from tunewise.train import memory as mem

    try:
        facts, shape, hw = run_shape(cfg, model, stored, train_ds, hw)
        wanted, without, chosen = mem.auto_checkpointing(facts, cfg.method.name, mem.MethodParams.from_config(cfg.method),
                                                         shape, hw)
        failed = None
    except Exception as e:  # an architecture the estimate cannot read: leave it off, and say so
        wanted, without, chosen, failed = False, None, None, f"{type(e).__name__}: {e}"
    # every process reaches the all-reduce (one that returned early would leave the others waiting in it)
    on = dist.all_reduce_sum(float(wanted)) > 0
    if failed is not None:
        return on, f"auto: {'on' if on else 'off'} (the memory estimate failed on this model: {failed})"
    share = f"{mem.fmt_bytes(without.training)} of the {mem.fmt_bytes(without.budget)} this process may use"
    if on != wanted:
        return True, f"auto: on (another process of this run needs it; this one is estimated at {share})"
    if not on:
        return False, f"auto: off (this run is estimated at {share}: it fits well without recomputing activations)"
    return True, (f"auto: on (this run without it is estimated at {share}, more than half; with it "
                  f"{mem.fmt_bytes(chosen.training)}; each layer runs its forward twice: 1.15-1.3x the time measured at "
                  f"Qwen2.5-1.5B LoRA on a CPU; set train.gradient_checkpointing: false to choose speed)")


def estimate_without_checkpointing(cfg: Config, model, stored: str | None, train_ds, hw=None):
    """train/memory.Estimate of this run without gradient checkpointing (its budget: what this process may use)."""
    from tunewise.train import memory as mem

    facts, shape, hw = run_shape(cfg, model, stored, train_ds, hw)
    return mem.estimate(facts, cfg.method.name, mem.MethodParams.from_config(cfg.method), shape, hw)


def run_shape(cfg: Config, model, stored: str | None, train_ds, hw=None):
    """(models/facts.ModelFacts, train/memory.Shape without checkpointing, tunewise.hardware.Hardware) of this run:
    what its memory estimate reads."""
    from dataclasses import replace

    from tunewise.hardware import detect_hardware
    from tunewise.models.facts import facts_from_config
    from tunewise.train import distributed as dist
    from tunewise.train import memory as mem

    t, world = cfg.train, dist.world_size()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    facts = facts_from_config(base.config, trust_remote_code=cfg.model.trust_remote_code, stored=stored)
    if hw is None:
        hw = detect_hardware()
        if not hw.cuda:  # the weights are loaded already: count them back into what this process may use
            import psutil

            hw = replace(hw, available_ram_bytes=hw.available_ram_bytes + psutil.Process().memory_info().rss * world)
    lengths = train_ds.lengths if train_ds is not None and len(train_ds) else []
    precision, wdtype = mem.resolved_dtypes(t.precision, cfg.model.dtype, hw, facts, world)
    shape = mem.Shape.from_config(
        cfg, batch=t.per_device_batch_size, seq=max(1, min(cfg.data.max_length, max(lengths, default=cfg.data.max_length))),
        supervised_share=_supervised_share(train_ds), gradient_checkpointing=False, precision=precision,
        weight_dtype=wdtype, frozen_dtype=resolved_frozen_dtype(cfg, model, stored), nproc=world)
    return facts, shape, hw


def _supervised_share(train_ds) -> float:
    """The share of training tokens with a label, as encoding counted it (0.5 where the counts are not known)."""
    stats = getattr(train_ds, "stats", None) or {}
    return stats["supervised_tokens"] / stats["total_tokens"] if stats.get("total_tokens") else 0.5


MMAP_THRESHOLD = 1 << 20


def returns_freed_memory() -> bool:
    """On a CPU, make freed tensors of MMAP_THRESHOLD bytes or more go straight back to the OS (glibc's mallopt).

    Gradient checkpointing frees each layer's activations as soon as the next layer runs, so little is live at once;
    but glibc raises its mmap threshold by itself after large frees (up to 32 MiB), and the freed activations then
    stay in a fragmented heap. Measured at Qwen2.5-1.5B, LoRA, checkpointing, 661 tokens: peak RSS 8.6 GB with the
    default, 4.1 GB with a fixed 1 MiB threshold (5.6 GB with 16 MiB), at the cost of fresh pages for each large
    tensor: a forward and backward 15-30% slower here in single timings, while the sweep's 1.5B LoRA cell ran at 9.1
    and 10.4 tokens/s with checkpointing against 11.9 without (session 14, quiet). It is done only when checkpointing is on,
    i.e. when memory matters more than speed."""
    import torch

    if torch.cuda.is_available():
        return False
    from tunewise.compat import malloc_mmap_threshold

    return malloc_mmap_threshold(MMAP_THRESHOLD)


def resolved_frozen_dtype(cfg: Config, model, stored: str | None = None) -> str:
    """train.frozen_dtype with 'auto' resolved for this model, its checkpoint's dtype (`stored`) and this machine
    (train/precision.py)."""
    if cfg.train.frozen_dtype != "auto":
        return cfg.train.frozen_dtype
    from tunewise import methods
    from tunewise.train import distributed as dist
    from tunewise.train.precision import frozen_dtype, resolve

    choice = resolve(cfg.train.precision, model, world=dist.world_size())
    return frozen_dtype("auto", choice.precision, methods.get(cfg.method.name).peft, stored)


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


def _scheduler_kwargs(t) -> dict:
    if t.lr_scheduler == "cosine_with_restarts":
        return {"num_cycles": t.scheduler_cycles}
    if t.lr_scheduler == "polynomial":
        return {"power": 1.0, "lr_end": 1e-7}
    return {}
