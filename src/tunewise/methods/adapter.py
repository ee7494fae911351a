"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020) in every transformer block.

Each adapter is down-projection -> nonlinearity -> up-projection with a residual connection, added to a
sublayer's output: after the feed-forward block ('pfeiffer', one per block) or after attention and after
the feed-forward block ('houlsby', two per block). The up-projection starts at zero, so training starts
from exactly the base model.

Why our own module: the `adapters` library pins transformers 4.x and does not know Gemma 3; these 60
lines do. Each adapter is a `tunewise_adapter` child of the sublayer it follows and acts through a forward
hook on that sublayer, so the base model's weights and parameter names are untouched. The result folder holds
`bottleneck_adapter.safetensors` (adapter weights only) and `bottleneck_adapter.json`; trainer checkpoints
hold full weights plus the adapter keys, and the model config carries the adapter settings so a
checkpoint can be reloaded too. Not mergeable: the nonlinearity cannot be folded into linear weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from tunewise.errors import ConfigError, RunError
from tunewise.methods import register, sizes
from tunewise.methods.layers import base_of, decoder_layers

CONFIG_NAME = "bottleneck_adapter.json"
WEIGHTS_NAME = "bottleneck_adapter.safetensors"
CHILD = "tunewise_adapter"           # child module name inside each adapted sublayer
CONFIG_KEY = "tunewise_bottleneck_adapter"  # settings stored on model.config (so checkpoints are reloadable)
_SUBLAYERS = {"attn": ("self_attn", "attention", "attn", "self_attention"), "mlp": ("mlp", "feed_forward", "ffn")}
_ACTS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Bottleneck(nn.Module):
    """x + up(act(down(x))), with up initialised to zero (an identity at the start)."""

    def __init__(self, hidden: int, size: int, activation: str = "gelu"):
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = _ACTS[activation]()
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x.to(self.down.weight.dtype)))).to(x.dtype)


def _sublayer(block: nn.Module, kind: str) -> nn.Module:
    for name in _SUBLAYERS[kind]:
        if isinstance(getattr(block, name, None), nn.Module):
            return getattr(block, name)
    raise ConfigError(f"adapter: a transformer block of this model has no {kind} sublayer "
                      f"(looked for {', '.join(_SUBLAYERS[kind])})", where="method.name",
                      fix="use method.name: lora, which works on any linear layers")


def _run_adapter(module, _args, output):
    """Forward hook on a sublayer: its output goes through the adapter living inside it."""
    adapter = getattr(module, CHILD)
    if isinstance(output, tuple):  # attention returns (hidden, weights)
        return (adapter(output[0]),) + tuple(output[1:])
    return adapter(output)


def settings_for(cfg) -> dict:
    return {"size": cfg.adapter_size, "placement": cfg.adapter_placement, "activation": "gelu"}


def add_adapters(model, settings: dict):
    """Insert one adapter per sublayer in every block (idempotent per model); returns the model."""
    base = base_of(model)
    if getattr(base.config, CONFIG_KEY, None):
        raise RunError("this model already has bottleneck adapters", where="method.name")
    hidden = (base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config).hidden_size
    kinds = ("attn", "mlp") if settings["placement"] == "houlsby" else ("mlp",)
    p = next(base.parameters())
    dtype = p.dtype if p.is_floating_point() else torch.float32
    _, blocks = decoder_layers(base)
    for block in blocks:
        for k in kinds:
            sub = _sublayer(block, k)
            sub.add_module(CHILD, Bottleneck(hidden, settings["size"], settings["activation"]).to(device=p.device, dtype=dtype))
            sub.register_forward_hook(_run_adapter)
    setattr(base.config, CONFIG_KEY, dict(settings))
    return model


def adapter_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in base_of(model).state_dict().items() if f".{CHILD}." in k}


def save_adapter(model, out_dir: str | Path) -> None:
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = getattr(base_of(model).config, CONFIG_KEY)
    save_file(adapter_state(model), str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps({"type": "bottleneck", **settings,
                                               "base_model_type": base_of(model).config.model_type}, indent=2))


def is_adapter_checkpoint(path: Path) -> bool:
    """A trainer checkpoint (full weights) of an adapter run: its config.json carries the adapter settings."""
    conf = Path(path) / "config.json"
    return conf.exists() and CONFIG_KEY in json.loads(conf.read_text(encoding="utf-8"))


def load_adapter(model, path: str | Path, *, is_trainable: bool = False):
    """Insert adapters as saved in `path` (a result folder or a checkpoint) and load their weights."""
    from safetensors import safe_open

    path = Path(path)
    base = base_of(model)
    if (path / CONFIG_NAME).exists():
        settings = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        weights = path / WEIGHTS_NAME
    else:  # checkpoint: settings on the config, weights among the full model's
        settings = json.loads((path / "config.json").read_text(encoding="utf-8"))[CONFIG_KEY]
        weights = path / "model.safetensors"
        if getattr(base.config, CONFIG_KEY, None):
            delattr(base.config, CONFIG_KEY)  # loaded from the checkpoint's config; the modules are not there yet
    settings = {k: settings[k] for k in ("size", "placement", "activation")}
    add_adapters(model, settings)
    with safe_open(str(weights), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys() if f".{CHILD}." in k}
    expected = set(adapter_state(model))
    if set(state) != expected:
        raise RunError(f"adapter weights do not match this model ({len(state)} saved, {len(expected)} expected)",
                       where=str(path), fix="load the adapter onto the base model it was trained on")
    base.load_state_dict(state, strict=False)
    model.requires_grad_(False)
    if is_trainable:
        for name, p in base.named_parameters():
            p.requires_grad = f".{CHILD}." in name
    return model


@register(
    "adapter",
    en="Bottleneck adapters: a small down-project/up-project layer with a residual in every block "
    "(method.adapter_size, placement pfeiffer or houlsby); the model stays frozen.",
    zh="瓶颈适配器（Adapter）：在每个 Transformer 层里插入“降维-激活-升维”加残差的小模块（method.adapter_size，pfeiffer 或 houlsby 位置），原模型冻结。",
    mergeable=False, save=save_adapter, continues=("bottleneck",),
    trainable_params=sizes.bottleneck,
)
def apply(model, cfg, ctx=None):
    if ctx and ctx.get("previous_adapter"):
        return load_adapter(model, ctx["previous_adapter"], is_trainable=True)
    model.requires_grad_(False)
    add_adapters(model, settings_for(cfg))
    for name, p in model.named_parameters():
        p.requires_grad = f".{CHILD}." in name
    return model
