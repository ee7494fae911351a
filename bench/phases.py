"""Where a tunewise training step's time goes, per phase: `python -m bench.phases [--batch 4] [--steps 8]`.

On the headline workload (bench/workload.py, Gemma 3 270M, LoRA r16 on all linear layers, max_length 512,
packed batches as `tunewise train` runs them by default), each step is split into:
- data: collating the batch;
- attention: the attention blocks' forward and backward (q/k/v/o projections with their LoRA, rotary, the
  attention kernel), timed by forward hooks and full backward hooks on each attention module;
- MLP: the same for the MLP blocks (gate/up/down projections with their LoRA, the activation);
- head/loss: the output projection and cross-entropy at the supervised positions (tunewise's fused loss
  computes its gradient in forward, so this is forward time);
- optimizer: the AdamW step and zeroing the gradients;
- other: the rest (embedding, norms, residual adds, autograd bookkeeping).
On a CPU every op runs synchronously, so wall time between a module's hooks is that module's time. The matmul
FLOPs of each phase are counted too, so each phase's share of the measured matmul ceiling is printed.
Writes bench/PHASES.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


class PhaseClock:
    """Wall time per phase from module hooks: forward (pre -> post) and backward (pre -> post) of each module."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: dict[int, float] = {}
        self.handles = []

    def watch(self, module, phase: str) -> None:
        def fwd_pre(m, args):
            self._open[id(m)] = time.perf_counter()

        def fwd_post(m, args, out):
            self.seconds[phase] += time.perf_counter() - self._open.pop(id(m), time.perf_counter())

        def bwd_pre(m, grad_out):
            self._open[-id(m)] = time.perf_counter()

        def bwd_post(m, grad_in, grad_out):
            self.seconds[phase] += time.perf_counter() - self._open.pop(-id(m), time.perf_counter())

        self.handles += [module.register_forward_pre_hook(fwd_pre), module.register_forward_hook(fwd_post),
                         module.register_full_backward_pre_hook(bwd_pre), module.register_full_backward_hook(bwd_post)]

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds


def _config(work: Path, batch: int, examples: int, packing, train: dict | None = None) -> Path:
    from tunewise.fileio import write_jsonl

    from bench.workload import instruction_records

    write_jsonl(work / "train.jsonl", instruction_records(examples, seed=0))
    import yaml

    cfg = {"run": {"root": str(work), "name": "prof"}, "model": {"name_or_path": "gemma3-270m"},
           "data": {"datasets": [{"path": str(work / "train.jsonl")}], "val_size": 0, "max_length": 512,
                    "shuffle": False, "clean": {"dedup_exact": False, "dedup_near": False}},
           "method": {"name": "lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0},
           "train": {"per_device_batch_size": batch, "gradient_accumulation_steps": 1, "learning_rate": 2e-4,
                     "packing": packing, **(train or {})}}
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    return work / "c.yaml"


def profile(batch: int = 4, steps: int = 8, packing="auto", train: dict | None = None) -> dict:
    from bench.__main__ import matmul_gflops
    from tunewise.config import load_config
    from tunewise.cpu import use_threads
    from tunewise.train.assemble import build_trainer, load_prepared
    from tunewise.train.trainer import causal_lm, flush_denormals

    work = Path(tempfile.mkdtemp(prefix="tw-profile-"))
    cfg = load_config(_config(work, batch, batch * (steps + 2), packing, train))
    threads = use_threads(cfg.train.num_threads)[0].threads
    train_ds, model, pad_id = load_prepared(cfg)
    trainer, _ = build_trainer(cfg, model, train_ds, None, out=work, pad_id=pad_id, report=False)
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1
    opt, collate = trainer.optimizer, trainer.data_collator
    lm = causal_lm(model)
    conf = lm.config
    clock = PhaseClock()
    for layer in lm.get_decoder().layers:
        clock.watch(layer.self_attn, "attention")
        clock.watch(layer.mlp, "MLP")
    model.train()
    exs = train_ds.examples
    tokens, supervised, total = 0, 0, 0.0
    with flush_denormals(cfg.train.flush_denormal):
        for s in range(steps + 1):
            feats = [{"input_ids": e.input_ids, "labels": e.labels} for e in exs[s * batch:(s + 1) * batch]]
            if s == 1:  # step 0 warms up (allocator, kernels); the clock starts from step 1
                clock.seconds.clear()
                total, tokens, supervised = 0.0, 0, 0
            t0 = time.perf_counter()
            b = collate(feats)
            t1 = time.perf_counter()
            loss_t = _timed_loss(trainer, clock)
            trainer.training_step(model, b, None)
            t2 = time.perf_counter()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t3 = time.perf_counter()
            loss_t.remove()
            clock.add("data", t1 - t0)
            clock.add("optimizer", t3 - t2)
            total += t3 - t0
            tokens += sum(len(f["input_ids"]) for f in feats)
            supervised += sum(sum(1 for y in f["labels"][1:] if y != -100) for f in feats)
    fp32 = matmul_gflops("float32")
    bf16 = bool(trainer.args.bf16)  # train.precision as the run resolved it (auto: bf16 where the CPU multiplies it fast)
    ceiling = matmul_gflops("bfloat16") if bf16 else fp32
    h, inter, layers = conf.hidden_size, conf.intermediate_size, conf.num_hidden_layers
    heads, kv, hd = conf.num_attention_heads, conf.num_key_value_heads, getattr(conf, "head_dim", None) or h // conf.num_attention_heads
    r = cfg.method.lora_r
    # matmul FLOPs per token, forward + input-gradient backward (2 + 2 per weight), frozen base with LoRA
    attn_w = h * heads * hd * 2 + h * kv * hd * 2
    mlp_w = 3 * h * inter
    lora_attn = r * (h + heads * hd) * 2 + r * (h + kv * hd) * 2
    lora_mlp = r * (h + inter) * 3
    flops = {"attention": 4 * (attn_w + lora_attn) * layers, "MLP": 4 * (mlp_w + lora_mlp) * layers,
             "head/loss": 4 * h * conf.vocab_size * supervised / max(tokens, 1)}
    out = {"batch": batch, "steps": steps, "tokens": tokens, "supervised": supervised, "seconds": total,
           "tokens_per_s": tokens / total, "threads": threads, "fp32_gflops": fp32, "phases": {},
           "precision": "bf16" if bf16 else "fp32", "ceiling_gflops": ceiling}
    accounted = 0.0
    for phase in ("data", "attention", "MLP", "head/loss", "optimizer"):
        sec = clock.seconds.get(phase, 0.0)
        accounted += sec
        f = flops.get(phase)
        out["phases"][phase] = {"seconds": sec, "share": sec / total,
                                "gflops_per_s": (f * tokens / sec / 1e9) if f and sec else None}
    out["phases"]["other"] = {"seconds": total - accounted, "share": (total - accounted) / total, "gflops_per_s": None}
    fpt = sum(flops.values())
    out["model_gflop_per_token"] = fpt / 1e9
    out["ceiling_share"] = tokens / total * fpt / (ceiling * 1e9)
    return out


def _timed_loss(trainer, clock: PhaseClock):
    """Time tunewise's loss (head and cross-entropy at the supervised positions, gradient made in forward)."""
    import tunewise.train.trainer as tt

    real = tt.FusedLinearCE.apply

    class Handle:
        def remove(self):
            tt.FusedLinearCE.apply = real

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            clock.add("head/loss", time.perf_counter() - t0)

    tt.FusedLinearCE.apply = timed
    return Handle()


def render(p: dict) -> str:
    lines = ["# Where a training step's time goes (tunewise, Gemma 3 270M, LoRA r16 all-linear)", "",
             f"`python -m bench.phases --batch {p['batch']} --steps {p['steps']}`: the headline workload "
             f"(bench/workload.py), packed batches of {p['batch']}, {p['steps']} steps after one warm-up, "
             f"{p['threads']} threads; {p['tokens']} tokens ({p['supervised']} supervised) in {p['seconds']:.1f} s = "
             f"{p['tokens_per_s']:.1f} tokens/s, trained in {p.get('precision', 'fp32')}. Matmul ceiling measured in "
             f"the same run: fp32 {p['fp32_gflops']:.0f} GFLOP/s"
             + (f", bf16 {p['ceiling_gflops']:.0f} GFLOP/s" if p.get("precision") == "bf16" else "")
             + f"; model matmul FLOPs per token {p['model_gflop_per_token']:.2f} GFLOP "
             f"(the head counted at the supervised positions, as tunewise computes it), so this run is at "
             f"{p['ceiling_share']:.0%} of the {p.get('precision', 'fp32')} ceiling.", "",
             "| phase | seconds | share of the step | matmul GFLOP/s in the phase |", "|---|---|---|---|"]
    for name, v in p["phases"].items():
        rate = f"{v['gflops_per_s']:.0f}" if v["gflops_per_s"] else "-"
        lines.append(f"| {name} | {v['seconds']:.2f} | {v['share']:.1%} | {rate} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.phases")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--packing", default="auto")
    ap.add_argument("--out", default=str(HERE / "PHASES.md"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a train.* setting, e.g. loss_chunk_size=256")
    a = ap.parse_args(argv)
    packing = {"true": True, "false": False}.get(a.packing, a.packing)
    import yaml

    train = {k: yaml.safe_load(v) for k, v in (x.split("=", 1) for x in a.set)}
    p = profile(a.batch, a.steps, packing, train)
    md = render(p)
    if a.json:
        print(json.dumps(p))
    print(md)
    Path(a.out).write_text(md, encoding="utf-8")
    print(f"[profile] wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
