"""Tuning methods. Each module registers `apply(model, cfg: MethodConfig, ctx) -> model` under a name.

A method decides which parameters train; the trainer never needs to know which method ran.
`tunewise methods` lists them with a one-line explanation in English and Chinese.

Besides `apply`, a method may register:
- `check(cfg: Config)`: model-free validation of the whole config (raises ConfigError);
- `load_kwargs(method_cfg, dtype)`: extra `from_pretrained` kwargs (quantisation);
- `save(model, out_dir)` / `load(base_model, result_dir)`: its own result format (default: save_pretrained / peft);
- `continues`: kinds of previous result (see `result_kind`) it keeps training instead of starting fresh;
- `after_load(model)`: fix-ups right after the base is loaded, for training and for exact reloads.

The functions at the bottom are the one place that knows every result format; infer, evaluate and
export should call `load_trained` rather than guess between peft adapters and full weights.
"""

from __future__ import annotations

import importlib
import pkgutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tunewise.config.methods import FACTS, MethodFacts
from tunewise.console import say
from tunewise.errors import ConfigError, RunError, TunewiseError
from tunewise.runs import RunDir


@dataclass
class MethodInfo:
    name: str
    apply: Callable[..., Any]
    summary_en: str
    summary_zh: str
    facts: MethodFacts         # what it trains, its default LR and range (config/methods.py)
    trainable_params: Callable[..., int]  # (model shape, method settings) -> parameters it trains (methods/sizes.py)
    mergeable: bool = True     # can be merged into the base for export
    load_kwargs: Callable[..., dict] | None = None  # extra from_pretrained kwargs (e.g. quantization)
    check: Callable[..., None] | None = None        # model-free config validation
    save: Callable[..., None] | None = None         # save the result (default: model.save_pretrained)
    continues: tuple[str, ...] = ()                 # previous result kinds this method keeps training
    after_load: Callable[..., Any] | None = None    # fix-ups right after loading the base (training and as_trained)

    @property
    def peft(self) -> bool:
        """The result is saved apart from the base (adapter/), not as full weights (model/)."""
        return self.facts.adapter_like


_METHODS: dict[str, MethodInfo] = {}


def register(name: str, *, en: str, zh: str, trainable_params: Callable[..., int], mergeable: bool = True,
             load_kwargs=None, check=None, save=None, continues: tuple[str, ...] = (), after_load=None):
    facts = FACTS.get(name)
    if facts is None:
        raise TypeError(f"method '{name}' has no entry in tunewise/config/methods.py (what it trains, its default LR)")

    def deco(fn):
        _METHODS[name] = MethodInfo(name, fn, en, zh, facts, trainable_params, mergeable, load_kwargs, check, save,
                                    continues, after_load)
        return fn

    return deco


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def get(name: str) -> MethodInfo:
    _load_all()
    if name not in _METHODS:
        import difflib

        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        raise ConfigError(
            f"unknown method '{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""),
            where="method.name",
            fix=f"use one of: {', '.join(sorted(_METHODS))} (`tunewise methods` explains each)",
        )
    return _METHODS[name]


def all_methods() -> list[MethodInfo]:
    _load_all()
    return [_METHODS[k] for k in sorted(_METHODS)]


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if hasattr(p, "quant_state") or p.__class__.__name__ == "Params4bit":
            n *= 2  # 4-bit packs two values per byte element
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def _say(msg: str) -> None:
    say(f"[tunewise] {msg}")


# ---------------------------------------------------------------------------------------------
# Building the trainable model

def check_config(cfg) -> MethodInfo:
    """Validate the method against the whole config before anything heavy happens."""
    info = get(cfg.method.name)
    if info.check is not None:
        info.check(cfg)
    check_frozen_dtype(info, cfg.train.frozen_dtype)
    return info


def check_frozen_dtype(info: MethodInfo, frozen_dtype: str) -> None:
    """Narrow frozen weights only where the result leaves them out: a full-weight result would save them rounded."""
    if frozen_dtype not in ("float32", "auto") and not info.peft:
        raise ConfigError(
            f"train.frozen_dtype={frozen_dtype} does not go with method '{info.name}', which saves the whole model "
            "(its frozen weights would be saved rounded)",
            where="train.frozen_dtype", fix="set train.frozen_dtype=float32, or use lora/qlora to train with a narrow base",
        )


def base_load_kwargs(info: MethodInfo, cfg) -> dict:
    if info.load_kwargs is None:
        return {}
    from tunewise.models.load import torch_dtype

    return info.load_kwargs(cfg.method, torch_dtype(cfg.model.dtype))


def result_dir(run: Path) -> Path | None:
    """The trained result of a run directory: model/ (full weights) or adapter/, or None."""
    for name in ("model", "adapter"):
        if (Path(run) / name).exists():
            return Path(run) / name
    return None


def result_kind(path: Path | None) -> str | None:
    """What a result folder holds: a peft type ('LORA', 'PREFIX_TUNING', ...), 'bottleneck', 'model' or None."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    if (path / "adapter_config.json").exists():
        from tunewise.fileio import read_json

        return str(read_json(path / "adapter_config.json").get("peft_type", "LORA"))
    from tunewise.methods.adapter import CONFIG_NAME, is_adapter_checkpoint

    if (path / CONFIG_NAME).exists() or is_adapter_checkpoint(path):
        return "bottleneck"
    if (path / "config.json").exists():
        return "model"
    return None


def _saves_embeddings(model, modules_to_save) -> bool:
    """True when method.modules_to_save already trains the whole embedding or output matrix (then the
    control-token rows train with it, and peft cannot wrap the same module twice)."""
    wanted = set(modules_to_save or ())
    if not wanted:
        return False
    layers = {id(m) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    return any(id(mod) in layers and (name in wanted or name.rsplit(".", 1)[-1] in wanted)
               for name, mod in model.named_modules())


def apply_method(cfg, model, *, previous_run: Path | None = None, tokenizer=None, template=None):
    """Apply cfg.method to a loaded base model, continuing a previous run's adapter where that makes sense.

    - the same kind of adapter (LoRA for lora/qlora, prefix, prompt, bottleneck): keep training it;
    - a LoRA adapter under a full-weights method (full, freeze): fold it into the weights first;
    - anything else would save a result that silently lacks the previous training: refuse, with a fix.
    """
    info = get(cfg.method.name)
    if info.after_load is not None:
        model = info.after_load(model)
    prev = Path(previous_run) / "adapter" if previous_run and (Path(previous_run) / "adapter").exists() else None
    kind = result_kind(prev)
    ctx: dict = {"previous_adapter": None, "tokenizer": tokenizer, "token_ids": None}
    if template is not None and tokenizer is not None and cfg.method.train_stop_tokens \
            and not _saves_embeddings(model, cfg.method.modules_to_save):
        from tunewise.templates import control_token_ids

        ctx["token_ids"] = control_token_ids(template, tokenizer)
    if kind is not None and kind in info.continues:
        ctx["previous_adapter"] = prev
        _say(f"continuing the previous run's {kind.lower()} adapter ({prev}); its own settings (rank, tokens, size) apply")
    elif kind == "LORA" and not info.peft:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, prev).merge_and_unload()
        _say(f"folded the previous run's LoRA adapter into the weights before {info.name} training")
    elif kind is not None:
        raise ConfigError(
            f"method '{info.name}' cannot continue a run whose result is a {kind.lower()} adapter ({prev}): "
            "the new result would not contain the previous training",
            where="model.name_or_path",
            fix=f"continue with method.name: {_continuing_method(kind)}, or export the previous run "
            f"(`tunewise export {previous_run}`) and set model.name_or_path to {previous_run}/export/merged",
        )
    return info.apply(model, cfg.method, ctx)


def _continuing_method(kind: str) -> str:
    names = [m.name for m in all_methods() if kind in m.continues]
    return " or ".join(names) or "the previous run's method"


def save_result(info: MethodInfo, model, out_dir: Path) -> None:
    """Write the trained result (adapter or full weights) to out_dir."""
    if info.save is not None:
        info.save(model, out_dir)
    else:
        model.save_pretrained(out_dir, safe_serialization=True)


# ---------------------------------------------------------------------------------------------
# Loading a trained result (infer, evaluate, export and tests use these)

def load_result(base_model, result: str | Path, *, is_trainable: bool = False):
    """Apply a saved adapter (peft or bottleneck) to an already loaded base model."""
    result = Path(result)
    kind = result_kind(result)
    if kind == "bottleneck":
        from tunewise.methods.adapter import load_adapter

        return load_adapter(base_model, result, is_trainable=is_trainable)
    if kind in (None, "model"):
        raise RunError("not an adapter folder (no adapter_config.json or bottleneck_adapter.json)", where=str(result),
                       fix="pass the run's adapter/ folder or a checkpoint of an adapter run")
    from peft import PeftModel

    from tunewise.methods.tokenrows import speed_up

    model = PeftModel.from_pretrained(base_model, result, is_trainable=is_trainable)
    speed_up(model)  # trained token rows (method.train_stop_tokens) without copying the vocabulary per token
    return model


def diverged_without_checkpoint(run: Path) -> bool:
    from tunewise.fileio import read_json

    try:
        summary = read_json(RunDir(run).summary)
    except Exception:  # no summary (or a damaged one): nothing to say about divergence
        return False
    return isinstance(summary, dict) and summary.get("diverged_at_step") is not None


def load_trained(run, *, checkpoint: str | Path | None = None, dtype: str | None = None,
                 as_trained: bool = False):
    """The trained model of a run (adapter applied or full weights), in eval mode.

    checkpoint: a checkpoints/checkpoint-N folder instead of the final result.
    dtype: override the run's model.dtype ('float32', 'bfloat16', ...).
    as_trained: load the base exactly as in training (e.g. 4-bit for qlora) instead of full precision.
    """
    from tunewise.models.load import load_model
    from tunewise.runs import RunDir, last_good_checkpoint

    rd = RunDir.open(run)
    cfg, run = rd.config, rd.path
    if checkpoint and not Path(checkpoint).is_dir():
        raise RunError("no such checkpoint folder", where=str(checkpoint),
                       fix=f"pick one of {run / 'checkpoints'}/checkpoint-N")
    result = Path(checkpoint) if checkpoint else result_dir(run)
    if result is None and (result := last_good_checkpoint(run)) is not None:
        _say(f"training diverged, so this run has no final result: using its last good checkpoint, {result}")
    kind = result_kind(result)
    if kind is None and diverged_without_checkpoint(run):
        raise RunError("training diverged (NaN/inf loss) before any good checkpoint was saved, so there are no usable "
                       "weights", where=str(run), fix="train again with a lower train.learning_rate (--overwrite)")
    if kind is None:
        raise RunError("the run has no trained adapter or model yet", where=str(run),
                       fix="finish `tunewise train` first (or pass --checkpoint)")
    dtype = dtype or cfg.model.dtype
    info = get(cfg.method.name)
    extra = base_load_kwargs(info, cfg) if as_trained else {}
    fix = info.after_load if as_trained and info.after_load else (lambda m: m)
    kw = dict(dtype=dtype, trust_remote_code=cfg.model.trust_remote_code, attn=cfg.model.attn_implementation)
    with damaged_result(result):
        if kind == "model":
            model = fix(load_model(result, **kw, **extra))
        elif kind == "bottleneck" and (result / "config.json").exists():
            # a trainer checkpoint of an adapter run: full weights whose adapter keys from_pretrained would drop
            from tunewise.methods.adapter import load_adapter

            model = load_adapter(fix(load_model(result, **kw, **extra)), result)
        else:
            base = fix(load_model(rd.resolved_model.path, **kw, **extra))
            model = load_result(base, result)
    model.eval()
    return model


@contextmanager
def damaged_result(result: Path):
    """A truncated or corrupt weights file (or adapter config) of a result as a RunError naming it."""
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, UnicodeDecodeError, ValueError, OSError, RuntimeError) as e:
        text = str(e)
        damaged = isinstance(e, (SafetensorError, UnicodeDecodeError)) or any(
            w in text for w in ("deserializ", "safetensors", "Expecting", "JSON", "header"))
        if not damaged or isinstance(e, TunewiseError):
            raise
        bad = next((f for f in sorted(Path(result).glob("*.safetensors")) if not _readable(f)), None)
        raise RunError(f"the saved weights cannot be read ({type(e).__name__}: {text.splitlines()[0][:200]}): the file is "
                       "truncated or damaged, e.g. by a disk that filled up or a copy that stopped",
                       where=str(bad or result),
                       fix="use another checkpoint (--checkpoint RUN/checkpoints/checkpoint-N), restore the file, or "
                       "train again") from None


def _readable(f: Path) -> bool:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(f), framework="pt") as h:
            h.keys()
        return True
    except (SafetensorError, OSError):
        return False
