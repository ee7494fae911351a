"""No setting silently ignored: every config key takes effect, or tunewise says why it does not.

Every key of the schema is declared here once (tests/advise/test_effect.py walks the schema to prove it):
- `ALWAYS[key] = module`: the key takes effect in every config; `module` reads it (the test checks its source).
- a `Rule` in RULES: why the key has no effect in a given config (en, zh) and how to make it count; `fires`
  and `holds` are two configs, one where it is ignored and one where it is not (the test runs both).
- `WARNED_BY[key] = "module:function"`: whether it takes effect depends on the model, the data or the
  machine, known only at run time; that function warns or refuses, naming the key.

`ignored(cfg, keys)` applies the rules to the keys a user set; `tunewise lint` and the lint before every
`tunewise train` report each as a warning (`--strict-lint` refuses them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunewise.config.methods import FACTS
from tunewise.config.schema import Config

Why = tuple[str, str]  # the reason, en and zh


@dataclass(frozen=True)
class Rule:
    key: str
    why: Callable[[Config], Why | None]  # the reason the key has no effect in this config, or None
    fix: Why
    fires: dict[str, Any] = field(default_factory=dict)  # dotted values: a config where the key is ignored ...
    holds: dict[str, Any] = field(default_factory=dict)  # ... and one where it takes effect


@dataclass(frozen=True)
class Ignored:
    key: str
    en: str
    zh: str
    fix_en: str
    fix_zh: str


RULES: dict[str, Rule] = {}


def _add(keys, why, fix: Why, fires: dict, holds: dict) -> None:
    for key in [keys] if isinstance(keys, str) else keys:
        RULES[key] = Rule(key, why, fix, fires, holds)


# ------------------------------------------------------------------------------------------ conditions
def has_validation(cfg: Config) -> bool:
    return cfg.data.val_size > 0 or bool(cfg.data.val_datasets)


def _no_validation(cfg: Config) -> Why | None:
    if has_validation(cfg):
        return None
    return ("there is no validation set (data.val_size is 0 and data.val_datasets is empty)",
            "没有验证集（data.val_size 为 0，且没有 data.val_datasets）")


_VAL_FIX = ("set data.val_size: 0.1 (or give data.val_datasets), or remove it", "设置 data.val_size: 0.1（或提供 data.val_datasets），或删除它")


def _where(**fact) -> tuple[str, ...]:
    """The methods with these facts (config/methods.py), e.g. _where(low_rank=True) -> ('lora', 'qlora')."""
    return tuple(n for n, f in FACTS.items() if all(getattr(f, k) == v for k, v in fact.items()))


def _only(key: str, values: tuple[str, ...], of: Callable[[Config], str]):
    """A condition: the key applies only while `key` (method.name, train.stage) is one of `values`."""
    def why(cfg: Config) -> Why | None:
        now = of(cfg)
        if now in values:
            return None
        only = " / ".join(values)
        return (f"it applies to {key} {only} only, and this config's {key} is {now}",
                f"它只在 {key} 为 {only} 时生效，而当前配置的 {key} 是 {now}")
    return why


def _methods(*names: str):
    return _only("method.name", names, lambda cfg: cfg.method.name)


def _method_fix(name: str) -> Why:
    return (f"remove it, or set method.name: {name}", f"删除它，或设置 method.name: {name}")


def _off(switch: str, get: Callable[[Config], bool]):
    def why(cfg: Config) -> Why | None:
        return None if get(cfg) else (f"{switch} is off", f"{switch} 已关闭")
    return why


def _on_fix(switch: str) -> Why:
    return (f"remove it, or set {switch}: true", f"删除它，或设置 {switch}: true")


def _first(*whys):
    def why(cfg: Config) -> Why | None:
        return next((w for w in (f(cfg) for f in whys) if w), None)
    return why


# ------------------------------------------------------------------------------------------ model
def _not_hub_id(cfg: Config) -> Why | None:
    from tunewise.models.hub import looks_like_hub_id

    name = cfg.model.name_or_path
    if looks_like_hub_id(name) and not Path(name).expanduser().exists():
        return None
    return (f"model.name_or_path '{name}' is not a Hugging Face Hub id (ORG/NAME): a revision picks a branch, tag or "
            "commit of a Hub repository only",
            f"model.name_or_path“{name}”不是 Hugging Face Hub 模型 id（ORG/NAME）：revision 只用于选择 Hub 仓库的分支、标签或提交")


_add("model.revision", _not_hub_id, ("remove it, or name a Hub model in model.name_or_path", "删除它，或在 model.name_or_path 中使用 Hub 模型"),
     {"model.name_or_path": "tiny-llama", "model.revision": "main"}, {"model.name_or_path": "Qwen/Qwen2.5-0.5B", "model.revision": "main"})


# ------------------------------------------------------------------------------------------ data
def _val_datasets_given(cfg: Config) -> Why | None:
    if not cfg.data.val_datasets:
        return None
    return ("data.val_datasets is given, so no share of the training data is held out",
            "已提供 data.val_datasets，因此不会再从训练数据中划出验证集")


_add("data.val_size", _val_datasets_given, ("remove one of data.val_size and data.val_datasets", "data.val_size 与 data.val_datasets 只保留一个"),
     {"data.val_datasets": ["v.jsonl"], "data.val_size": 0.2}, {"data.val_size": 0.2})


def _pretrain(cfg: Config) -> Why | None:
    if cfg.train.stage != "pretrain":
        return None
    return ("train.stage is pretrain: the loss covers every token of raw text, there is no prompt to mask",
            "train.stage 为 pretrain：损失覆盖原始文本的每个 token，没有需要屏蔽的提示词")


_add("data.train_on_prompt", _pretrain, ("remove it (it applies to train.stage: sft)", "删除它（它只用于 train.stage: sft）"),
     {"train.stage": "pretrain", "data.train_on_prompt": True}, {"data.train_on_prompt": True})


def _tags_unused(group: str):
    def why(cfg: Config) -> Why | None:
        specs = getattr(cfg.data, group)
        if not any(s.tags and s.format not in ("auto", "sharegpt") for s in specs):
            return None
        return ("role tags are read for format sharegpt only, and a dataset with tags has another format",
                "角色标签只对 sharegpt 格式有效，而带标签的数据集是另一种格式")
    return why


for _group in ("datasets", "val_datasets", "general"):
    _add(f"data.{_group}[].tags", _tags_unused(_group), ("remove tags, or set format: sharegpt", "删除 tags，或设置 format: sharegpt"),
         {f"data.{_group}": [{"path": "a.jsonl", "format": "alpaca", "tags": {"role_tag": "from"}}]},
         {f"data.{_group}": [{"path": "a.jsonl", "format": "sharegpt", "tags": {"role_tag": "from"}}]})


def _weight_unused(group: str, en: str, zh: str):
    def why(cfg: Config) -> Why | None:
        return (en, zh) if any(s.weight != 1.0 for s in getattr(cfg.data, group)) else None
    return why


_add("data.val_datasets[].weight", _weight_unused(
    "val_datasets", "validation datasets are used whole; weight mixes training datasets only",
    "验证集按原样全部使用；weight 只用于混合训练数据集"), ("remove weight from data.val_datasets", "删除 data.val_datasets 中的 weight"),
     {"data.val_datasets": [{"path": "v.jsonl", "weight": 2.0}]}, {"data.val_datasets": [{"path": "v.jsonl"}]})
_add("data.general[].weight", _weight_unused(
    "general", "general datasets are pooled and sampled to data.general_ratio of the training set; weight is not applied",
    "通用数据集合并后按训练集的 data.general_ratio 抽样；不使用 weight"),
     ("remove weight; size the mix with data.general_ratio", "删除 weight；用 data.general_ratio 控制混入量"),
     {"data.general": [{"path": "g.jsonl", "weight": 2.0}]}, {"data.general": [{"path": "g.jsonl"}]})

_add(["data.clean.extra_ai_phrases", "data.clean.ai_phrases_file"], _off("data.clean.ai_phrases", lambda c: c.data.clean.ai_phrases),
     _on_fix("data.clean.ai_phrases"), {"data.clean.ai_phrases": False}, {})


def _no_minhash(cfg: Config) -> Why | None:
    c = cfg.data.clean
    if c.dedup_near or (c.leakage_check and has_validation(cfg)):
        return None
    return ("no step uses MinHash: data.clean.dedup_near is off and the leakage check is off or has no validation set",
            "没有步骤使用 MinHash：data.clean.dedup_near 已关闭，泄漏检查也关闭或没有验证集")


_add(["data.clean.near_threshold", "data.clean.shingle_size", "data.clean.num_perm"], _no_minhash,
     _on_fix("data.clean.dedup_near"), {"data.clean.dedup_near": False, "data.clean.leakage_check": False}, {})


def _not_a_run(cfg: Config) -> Why | None:
    from tunewise.models.load import is_run_dir

    p = Path(cfg.model.name_or_path).expanduser()
    if p.is_dir() and is_run_dir(p):
        return None
    return ("replay mixes back a previous run's data, and model.name_or_path is not a run directory",
            "回放混入的是之前运行的数据，而 model.name_or_path 不是运行目录")


_add("data.replay_ratio", _not_a_run, ("remove it, or continue a run: model.name_or_path: runs/<previous>",
                                       "删除它，或在之前的运行上继续：model.name_or_path: runs/<之前的运行>"),
     {"data.replay_ratio": 0.3}, {})  # `holds` needs a run directory: tests/advise/test_effect.py makes one


def _no_general(cfg: Config) -> Why | None:
    return None if cfg.data.general else ("data.general is empty", "data.general 为空")


_add("data.general_ratio", _no_general, ("set data.general: builtin (or your own general data), or remove it",
                                         "设置 data.general: builtin（或你自己的通用数据），或删除它"),
     {"data.general_ratio": 0.3}, {"data.general": ["builtin"], "data.general_ratio": 0.3})

_AUG = _off("data.augment.enabled", lambda c: c.data.augment.enabled)
_add(["data.augment.methods", "data.augment.prob", "data.augment.copies", "data.augment.apply_to"], _AUG,
     _on_fix("data.augment.enabled"), {}, {"data.augment.enabled": True})


def _no_synonyms(cfg: Config) -> Why | None:
    if "synonym" in cfg.data.augment.methods:
        return None
    return ("data.augment.methods has no 'synonym' edit", "data.augment.methods 中没有 'synonym'")


_add("data.augment.synonyms_file", _first(_AUG, _no_synonyms), _on_fix("data.augment.enabled"),
     {"data.augment.enabled": True, "data.augment.methods": ["swap"]}, {"data.augment.enabled": True})

# ------------------------------------------------------------------------------------------ method
_add(["method.lora_r", "method.lora_alpha", "method.lora_dropout", "method.target_modules", "method.modules_to_save",
      "method.use_dora", "method.use_rslora"], _methods(*_where(low_rank=True)), _method_fix("lora"),
     {"method.name": "full"}, {"method.name": "qlora"})


def _embedding_trains(cfg: Config) -> Why | None:
    if not ({"embed_tokens", "wte", "word_embeddings"} & set(cfg.method.modules_to_save)):
        return None
    return ("method.modules_to_save trains the whole input embedding, the control tokens' rows included",
            "method.modules_to_save 已训练整个输入嵌入，其中包括控制 token 的行")


_add("method.train_stop_tokens", _first(_methods(*_where(low_rank=True)), _embedding_trains), _method_fix("lora"),
     {"method.modules_to_save": ["embed_tokens", "lm_head"]}, {"method.modules_to_save": ["lm_head"]})
_add("method.quant_bits", _methods("qlora"), _method_fix("qlora"), {"method.name": "lora"}, {"method.name": "qlora"})
_add(["method.freeze_trainable_layers", "method.freeze_extra_modules"], _methods("freeze"), _method_fix("freeze"),
     {"method.name": "lora"}, {"method.name": "freeze"})
_add("method.num_virtual_tokens", _methods(*_where(virtual_tokens=True)), _method_fix("prompt"), {}, {"method.name": "prefix"})
_add("method.prefix_projection", _methods("prefix"), _method_fix("prefix"), {"method.name": "prompt"}, {"method.name": "prefix"})
_add("method.prompt_init_text", _methods("prompt"), _method_fix("prompt"), {"method.name": "prefix"}, {"method.name": "prompt"})
_add(["method.adapter_size", "method.adapter_placement"], _methods("adapter"), _method_fix("adapter"), {}, {"method.name": "adapter"})


# ------------------------------------------------------------------------------------------ train
def _max_steps(cfg: Config) -> Why | None:
    if cfg.train.max_steps is None:
        return None
    return (f"train.max_steps ({cfg.train.max_steps}) sets the length of the run", f"训练长度由 train.max_steps（{cfg.train.max_steps}）决定")


_add("train.num_epochs", _max_steps, ("remove one of train.num_epochs and train.max_steps", "train.num_epochs 与 train.max_steps 只保留一个"),
     {"train.max_steps": 10, "train.num_epochs": 2}, {"train.num_epochs": 2})


def _epochs_given(cfg: Config) -> Why | None:
    if cfg.train.num_epochs is None:
        return None
    return ("train.num_epochs is set, so the number of passes is not derived from train.min_steps",
            "已设置 train.num_epochs，轮数不再由 train.min_steps 推算")


_add("train.min_steps", _first(_max_steps, _epochs_given), ("remove it, or leave train.num_epochs and train.max_steps unset",
                                                            "删除它，或不设置 train.num_epochs 和 train.max_steps"),
     {"train.num_epochs": 2}, {})


def _not_restarts(cfg: Config) -> Why | None:
    if cfg.train.lr_scheduler == "cosine_with_restarts":
        return None
    return (f"train.lr_scheduler is {cfg.train.lr_scheduler}, not cosine_with_restarts",
            f"train.lr_scheduler 是 {cfg.train.lr_scheduler}，不是 cosine_with_restarts")


_add("train.scheduler_cycles", _not_restarts, ("remove it, or set train.lr_scheduler: cosine_with_restarts",
                                               "删除它，或设置 train.lr_scheduler: cosine_with_restarts"),
     {}, {"train.lr_scheduler": "cosine_with_restarts"})


def _not_sgd(cfg: Config) -> Why | None:
    if cfg.train.optimizer == "sgd":
        return None
    return (f"train.optimizer is {cfg.train.optimizer}, and momentum is an sgd setting (Adam-like optimisers keep their own moments)",
            f"train.optimizer 是 {cfg.train.optimizer}，而 momentum 是 sgd 的设置（Adam 类优化器有自己的动量）")


_add("train.momentum", _not_sgd, ("remove it, or set train.optimizer: sgd", "删除它，或设置 train.optimizer: sgd"), {}, {"train.optimizer": "sgd"})
_add(["train.eval_steps", "train.early_stopping"], _no_validation, _VAL_FIX, {"data.val_size": 0}, {})
_add(["train.early_stopping_patience", "train.early_stopping_threshold"],
     _first(_no_validation, _off("train.early_stopping", lambda c: c.train.early_stopping)), _on_fix("train.early_stopping"),
     {"train.early_stopping": False}, {})


def _packing(cfg: Config) -> Why | None:
    if cfg.train.packing is not True:  # 'auto' yields to group_by_length (config.plan.packs)
        return None
    return ("train.packing is on: packed rows all have the same length already", "train.packing 已开启：打包后的行长度本来就相同")


def _stages(*stages: str):
    return _only("train.stage", stages, lambda cfg: cfg.train.stage)


def _stage_fix(stage: str) -> Why:
    return (f"set train.stage: {stage} (preference data: chosen/rejected pairs), or remove it",
            f"设置 train.stage: {stage}（偏好数据：选中/拒绝回答对），或删除它")


_add("preference.beta", _stages("dpo", "orpo", "simpo", "kto"), _stage_fix("dpo"), {"preference.beta": 0.2},
     {"train.stage": "dpo", "preference.beta": 0.2})
_add(["preference.loss_type", "preference.label_smoothing"], _stages("dpo"), _stage_fix("dpo"),
     {"preference.loss_type": "ipo", "preference.label_smoothing": 0.1},
     {"train.stage": "dpo", "preference.loss_type": "ipo", "preference.label_smoothing": 0.1})
_add("preference.gamma", _stages("simpo"), _stage_fix("simpo"), {"train.stage": "dpo", "preference.gamma": 0.5},
     {"train.stage": "simpo", "preference.gamma": 0.5})
_add("preference.sft_weight", _stages("dpo", "simpo"), _stage_fix("dpo"), {"train.stage": "orpo", "preference.sft_weight": 0.5},
     {"train.stage": "dpo", "preference.sft_weight": 0.5})
_add(["preference.desirable_weight", "preference.undesirable_weight"], _stages("kto"), _stage_fix("kto"),
     {"train.stage": "dpo", "preference.desirable_weight": 2.0, "preference.undesirable_weight": 2.0},
     {"train.stage": "kto", "preference.desirable_weight": 2.0, "preference.undesirable_weight": 2.0})
_add("preference.precompute_reference", _stages("dpo", "kto"), _stage_fix("dpo"),
     {"train.stage": "simpo", "preference.precompute_reference": True},
     {"train.stage": "dpo", "preference.precompute_reference": True})


_add("train.group_by_length", _packing, ("remove one of train.group_by_length and train.packing", "train.group_by_length 与 train.packing 只保留一个"),
     {"train.packing": True}, {})


def _virtual_tokens(cfg: Config) -> Why | None:
    if cfg.method.name not in _where(virtual_tokens=True):
        return None
    return (f"method {cfg.method.name} feeds its virtual tokens through peft's own forward, so the plain loss is used",
            f"{cfg.method.name} 方法的虚拟 token 走 peft 自己的前向计算，因此使用普通损失")


_add("train.fast_loss", _virtual_tokens, ("remove it (it applies to every other method)", "删除它（它适用于其他所有方法）"),
     {"method.name": "prompt"}, {})
_add("train.loss_chunk_size", _first(_virtual_tokens, _off("train.fast_loss", lambda c: c.train.fast_loss)),
     _on_fix("train.fast_loss"), {"train.fast_loss": False}, {})


def _no_generation_check(cfg: Config) -> Why | None:
    if cfg.train.stage != "sft":
        return ("train.stage is pretrain: there are no prompts to answer", "train.stage 为 pretrain：没有可以回答的提示词")
    return _no_validation(cfg)


_add("train.generation_check", _no_generation_check, _VAL_FIX, {"data.val_size": 0}, {})
_add(["train.generation_check_samples", "train.generation_check_every", "train.generation_check_budget",
      "train.generation_check_max_new_tokens"],
     _first(_no_generation_check, _off("train.generation_check", lambda c: c.train.generation_check)),
     _on_fix("train.generation_check"), {"train.generation_check": False}, {})


# ------------------------------------------------------------------------------------------ distributed
def _strategy(name: str):
    def why(cfg: Config) -> Why | None:
        if cfg.distributed.strategy == name:
            return None
        return (f"distributed.strategy is {cfg.distributed.strategy}, not {name}", f"distributed.strategy 是 {cfg.distributed.strategy}，不是 {name}")
    return why


_add(["distributed.fsdp", "distributed.fsdp_offload"], _strategy("fsdp"), ("remove it, or set distributed.strategy: fsdp",
                                                                           "删除它，或设置 distributed.strategy: fsdp"),
     {}, {"distributed.strategy": "fsdp"})
_add("distributed.deepspeed", _strategy("deepspeed"), ("remove it, or set distributed.strategy: deepspeed",
                                                       "删除它，或设置 distributed.strategy: deepspeed"),
     {}, {"distributed.strategy": "deepspeed"})

# ------------------------------------------------------------------------------------------ the rest
# Known only when the model, the data or the machine is: the function named warns or refuses, naming the key.
WARNED_BY = {
    "model.attention_dropout": "tunewise.train.assemble:dropout_overrides",
    "model.hidden_dropout": "tunewise.train.assemble:dropout_overrides",
    "train.save_steps": "tunewise.config.plan:checkpoint_interval",
    "train.warmup_ratio": "tunewise.advise.lint:warmup_both",
    "train.frozen_dtype": "tunewise.methods:check_frozen_dtype",
    "train.optimizer": "tunewise.train.optim:check_optimizer",
}

# Take effect in every config; the module named reads them.
ALWAYS = {
    "run.name": "tunewise.runs", "run.root": "tunewise.runs",
    "model.name_or_path": "tunewise.models.load", "model.dtype": "tunewise.train.assemble",
    "model.trust_remote_code": "tunewise.train.assemble", "model.attn_implementation": "tunewise.train.assemble",
    "data.datasets": "tunewise.data.prepare", "data.val_datasets": "tunewise.data.prepare", "data.general": "tunewise.data.prepare",
    "data.dataset_info": "tunewise.data.prepare", "data.max_length": "tunewise.train.data", "data.strict": "tunewise.data.prepare",
    "data.shuffle": "tunewise.data.prepare",
    "data.clean.normalize_unicode": "tunewise.data.clean", "data.clean.strip_markup": "tunewise.data.clean",
    "data.clean.ai_phrases": "tunewise.data.clean", "data.clean.min_chars": "tunewise.data.clean",
    "data.clean.max_chars": "tunewise.data.clean", "data.clean.dedup_exact": "tunewise.data.clean",
    "data.clean.dedup_near": "tunewise.data.clean", "data.clean.leakage_check": "tunewise.data.prepare",
    "data.augment.enabled": "tunewise.data.prepare",
    "template.name": "tunewise.train.workflow", "template.system": "tunewise.train.workflow",
    "template.tools": "tunewise.models.load",
    "data.num_workers": "tunewise.data.prepare", "data.token_stats_sample": "tunewise.data.commands",
    "method.name": "tunewise.methods",
    "train.stage": "tunewise.train.data", "train.learning_rate": "tunewise.train.assemble", "train.max_steps": "tunewise.train.workflow",
    "train.per_device_batch_size": "tunewise.train.assemble", "train.gradient_accumulation_steps": "tunewise.config.plan",
    "train.lr_scheduler": "tunewise.train.assemble", "train.warmup_steps": "tunewise.train.assemble",
    "train.weight_decay": "tunewise.train.assemble", "train.max_grad_norm": "tunewise.train.assemble",
    "train.seed": "tunewise.train.workflow", "train.logging_steps": "tunewise.train.assemble",
    "train.save_total_limit": "tunewise.train.assemble", "train.precision": "tunewise.train.assemble",
    "train.gradient_checkpointing": "tunewise.train.assemble", "train.packing": "tunewise.train.assemble",
    "train.num_threads": "tunewise.train.workflow", "train.flush_denormal": "tunewise.train.assemble",
    "train.resume": "tunewise.train.workflow", "train.l1": "tunewise.train.assemble", "train.l2": "tunewise.train.assemble",
    "train.neftune_alpha": "tunewise.train.assemble",
    "generation.max_new_tokens": "tunewise.infer.chat", "generation.temperature": "tunewise.infer.chat",
    "generation.top_k": "tunewise.infer.chat", "generation.top_p": "tunewise.infer.chat",
    "generation.repetition_penalty": "tunewise.infer.chat",
    "eval.max_new_tokens": "tunewise.evaluate.runner", "eval.batch_size": "tunewise.evaluate.runner",
    "eval.max_samples": "tunewise.evaluate.runner",
    "distributed.strategy": "tunewise.train.distributed", "distributed.backend": "tunewise.train.distributed",
}
for _group in ("datasets", "val_datasets", "general"):
    for _leaf in ("path", "name", "reader", "system"):
        ALWAYS[f"data.{_group}[].{_leaf}"] = "tunewise.data.prepare"
    for _leaf in ("format", "columns", "options"):  # how a source's rows are read: data/source.py
        ALWAYS[f"data.{_group}[].{_leaf}"] = "tunewise.data.source"
ALWAYS["data.datasets[].weight"] = "tunewise.data.prepare"


# ------------------------------------------------------------------------------------------ use
def _values(cfg: Config, key: str) -> list:
    """The values of a dotted key in `cfg`; a list-item key (data.datasets[].weight) gives one per item."""
    cur: list = [cfg]
    for part in key.split("."):
        name, many = part.removesuffix("[]"), part.endswith("[]")
        cur = [getattr(c, name) for c in cur]
        if many:
            cur = [x for c in cur for x in c]
    return cur


def set_keys(cfg: Config) -> frozenset[str]:
    """Keys whose value differs from the schema default: what a user set, when the file is not at hand."""
    from pydantic import BaseModel

    from tunewise.advise.explain import schema_keys

    out = set()
    for k in schema_keys():
        f = k.field
        default = f.default_factory() if f.default_factory is not None else f.default
        if isinstance(default, BaseModel):
            continue
        if any(v != default for v in _values(cfg, k.key)):
            out.add(k.key)
    return frozenset(out)


def ignored(cfg: Config, keys: frozenset[str] | None = None) -> list[Ignored]:
    """The settings among `keys` (the dotted keys a user wrote; default: those that differ from the defaults)
    that have no effect in `cfg`. Fields of list items count as set when they differ from their default."""
    differs = set_keys(cfg)
    keys = differs if keys is None else set(keys) | {k for k in differs if "[]" in k}
    out = []
    for key, r in RULES.items():
        if key not in keys:
            continue
        why = r.why(cfg)
        if why is not None:
            vals = _values(cfg, key)
            shown = vals[0] if len(vals) == 1 else vals
            out.append(Ignored(key, f"{key} = {shown!r} has no effect: {why[0]}", f"{key} = {shown!r} 不起作用：{why[1]}",
                               r.fix[0], r.fix[1]))
    return out
