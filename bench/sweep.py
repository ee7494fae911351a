"""`python -m bench --sweep [--quick]`: tokens/s and peak memory against model size, per method and peer.

Models are built from the real families' shapes with random weights (speed and memory do not depend on the
weights' values) and saved once under the cache folder. Each (size, method, peer) cell runs a few optimizer
steps in its own process, so its peak RSS (VmHWM) is its own; the first steps are a warm-up and are not timed.
tunewise's `advise` estimate for the same config is printed beside each measured peak.

Raw rows go to bench/sweep.json (merged across runs, so sizes can be run one at a time); the table, the
verdicts and the plot are rendered from it into bench/SWEEP.md and bench/sweep.png.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GiB = 1024 ** 3

# Shapes from each family's published config.json on the Hugging Face Hub (Qwen/Qwen2.5-0.5B, -1.5B, -3B;
# meta-llama/Llama-3.2-1B), checked against copies of those files in public code. Only what sets the cost:
# Llama 3.2's rope scaling and the rope thetas change no tensor shape, so they are left at the defaults.
SHAPES = {
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "llama-3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-3b": dict(model_type="qwen2", hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}
QUICK_SHAPES = {"tiny-qwen2-shape": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=4096,
                                         tie_word_embeddings=True)}
# On request: tunewise_bf16base (train.frozen_dtype=bfloat16, for a float32 checkpoint), tunewise_gc (gradient
# checkpointing on, as TRL's default has it), tunewise_nogc (off: tunewise's default, auto, decides per run),
# trl_fp32 (TRL's defaults but float32 arithmetic: its bf16 default autocasts, about a tenth of fp32's speed on a
# CPU without bf16 matrix units, too slow to finish at 1.5B there; this row gives that machine a TRL row that ends)
PEERS = ["tunewise", "trl_default", "plain", "tunewise_bf16base", "tunewise_gc", "tunewise_nogc", "trl_fp32"]
DEFAULT_PEERS = PEERS[:3]
METHODS = ["lora", "full", "qlora"]
# The sweep's tokenizer: a real BPE (SmolLM2's, 49,152 tokens, ChatML) so texts have realistic token counts; it
# fits inside every swept vocabulary, whose extra rows stay unused but still cost their share of the head.
# Gemma 3's (the main bench's) has 262,144 tokens, more than these models have rows. --quick: tiny-llama's.
TOKENIZER, QUICK_TOKENIZER = "smollm2-135m-instruct", "tiny-llama"
SETTINGS = dict(batch_size=4, max_length=256, warmup_steps=1, measured_steps=3, lr=2e-4, seed=0, lora_r=16, lora_alpha=32)


# ---------------------------------------------------------------- the models and the data

def build_model(name: str, shape: dict, tokenizer_from: str, cache: Path, dtype: str = "bfloat16") -> Path:
    """The model folder for `shape`: random weights (seed 0) saved as `dtype` safetensors (bfloat16: as these
    families publish their checkpoints), with the sweep's tokenizer."""
    out = cache / (name if dtype == "float32" else f"{name}-{dtype}")
    if (out / "model.safetensors").exists() or (out / "model.safetensors.index.json").exists():
        return out
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunewise.fileio import atomic_path
    from tunewise.models.load import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model(tokenizer_from).path)
    s = dict(shape)
    conf = AutoConfig.for_model(s.pop("model_type"), **s, max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(conf, dtype=torch.float32).to(getattr(torch, dtype))
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out


def build_data(work: Path, tokenizer_path: Path, n_train: int, n_val: int) -> dict:
    """Instruction-shaped text of realistic lengths: half long answers (emails, itineraries, step-by-step
    arithmetic: 100-500 tokens, cut at max_length) and half short ones (the demo set's classification and
    identity turns). Every training example is distinct; validation prompts are held out."""
    import random

    from tunewise.fileio import write_jsonl
    from tunewise.models.load import load_tokenizer
    from tunewise.samples.demo import demo_records
    from tunewise.samples.longform import heldout_longform, longform_records
    from tunewise.templates import choose_template
    from tunewise.templates.encode import encode_records

    rng = random.Random(0)
    short = demo_records(0)
    rng.shuffle(short)
    long_train = longform_records(n=n_train, seed=0)
    train = long_train[: n_train - n_train // 2] + short[: n_train // 2]
    rng.shuffle(train)
    val = heldout_longform(n=n_val - n_val // 2, train_seed=0, train_n=n_train) + short[-(n_val // 2):]
    write_jsonl(work / "train.jsonl", train)
    write_jsonl(work / "val.jsonl", val)
    tok = load_tokenizer(tokenizer_path)
    tpl = choose_template("chatml", tok, None)
    (work / "template.json").write_text(json.dumps(tpl.to_dict()))
    enc, st = encode_records(tok, tpl, train, max_length=SETTINGS["max_length"])
    return {"train": str(work / "train.jsonl"), "val": str(work / "val.jsonl"), "template": str(work / "template.json"),
            "template_name": tpl.name, "train_tokens": st.total_tokens,
            "lengths": sorted(len(e.input_ids) for e in enc)}


def tunewise_config(cell: Path, model: Path, method: str, data: dict, threads: int, peer: str = "tunewise") -> Path:
    """The tunewise config of a cell; `advise` estimates from the same file the cell trains from."""
    import yaml

    s = SETTINGS
    m = {"name": method}
    if method != "full":
        m.update(lora_r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=0.0)
    cfg = {"model": {"name_or_path": str(model)},
           "data": {"datasets": [{"path": data["train"]}], "val_size": 0, "max_length": s["max_length"], "shuffle": False,
                    "clean": {"dedup_exact": False, "dedup_near": False}},
           "template": {"name": data["template_name"]}, "method": m,
           "train": {"max_steps": s["warmup_steps"] + s["measured_steps"], "learning_rate": s["lr"],
                     "per_device_batch_size": s["batch_size"], "gradient_accumulation_steps": 1, "lr_scheduler": "linear",
                     "warmup_ratio": 0.0, "seed": s["seed"], "packing": True, "num_threads": threads,
                     "save_steps": 100000, "logging_steps": 100000}}
    if peer == "tunewise_bf16base":  # tunewise's low-memory setting: frozen base weights in bf16, fp32 arithmetic
        cfg["train"]["frozen_dtype"] = "bfloat16"
    if peer in ("tunewise_gc", "tunewise_nogc"):
        cfg["train"]["gradient_checkpointing"] = peer == "tunewise_gc"
    path = cell / f"{peer}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------- one cell, in its own process

def step_clock(warmup: int):
    """A Trainer callback: wall time of the steps after `warmup`, and the real tokens their forwards saw
    (the attention mask's ones where a batch is padded, every position of a packed row)."""
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.t0 = self.t1 = None
            self.tokens = self.steps = 0
            self.pending = {"lm": 0, "embed": 0}
            self.hooks = []

        def on_train_begin(self, args, state, control, model=None, **kw):
            # The *ForCausalLM forward sees the attention mask; tunewise's fused loss calls the decoder below it,
            # so the input embedding (every position of its padding-free packed row is real) counts there.
            lm = next(m for m in model.modules() if type(m).__name__.endswith("ForCausalLM"))
            self.hooks = [lm.register_forward_pre_hook(self._count_lm, with_kwargs=True),
                          lm.get_input_embeddings().register_forward_pre_hook(self._count_embed)]

        def _count_lm(self, module, args, kwargs):
            if module.training:
                ids, mask = kwargs.get("input_ids", args[0] if args else None), kwargs.get("attention_mask")
                self.pending["lm"] += int(mask.sum()) if mask is not None and mask.dim() == 2 else int(ids.numel())

        def _count_embed(self, module, args):
            if module.training or torch.is_grad_enabled():
                self.pending["embed"] += int(args[0].numel())

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            if state.global_step == warmup:
                self.t0 = now
            elif state.global_step > warmup:
                n = self.pending["lm"] or self.pending["embed"]
                self.t1, self.tokens, self.steps = now, self.tokens + n, self.steps + 1
            self.pending = {"lm": 0, "embed": 0}

        def on_train_end(self, *a, **kw):
            for h in self.hooks:
                h.remove()

    return StepClock()


def run_tunewise(config: Path, clock):
    """Training assembled as `tunewise train` assembles it (the same steps as tunewise.advise.measure), without
    a run directory, the generation check or saving the result: none of them is in the timed steps. Returns (steps,
    model, the peak RSS in MB once loaded, before the first step)."""
    from tunewise.config import load_config
    from tunewise.cpu import use_threads
    from tunewise.fileio import peak_rss_bytes
    from tunewise.train.assemble import build_trainer, fit, load_prepared

    cfg = load_config(config)
    use_threads(cfg.train.num_threads)
    train_ds, model, pad_id = load_prepared(cfg)
    load_peak_mb = peak_rss_bytes() / 2**20  # the peak so far: the interpreter, the data and the load
    with tempfile.TemporaryDirectory() as tmp:
        trainer, plan = build_trainer(cfg, model, train_ds, None, out=Path(tmp), pad_id=pad_id, report=False)
        trainer.add_callback(clock)
        fit(cfg, trainer, plan["total"])
    return trainer.state.global_step, trainer.model, load_peak_mb


def cell_main(peer: str, spec_path: Path) -> None:
    import torch

    from bench import peers

    spec = json.loads(spec_path.read_text())
    torch.manual_seed(spec["seed"])
    torch.set_num_threads(spec["threads"])
    out = spec_path.parent / peer
    out.mkdir(parents=True, exist_ok=True)
    train = [json.loads(x) for x in Path(spec["train"]).read_text().splitlines()]
    val = [json.loads(x) for x in Path(spec["val"]).read_text().splitlines()]
    clock = step_clock(spec["warmup_steps"])
    load_peak_mb = None  # recorded for tunewise's cells
    if peer.startswith("tunewise"):
        steps, model, load_peak_mb = run_tunewise(Path(spec["tunewise_config"]), clock)
        peers._training_done()
        tok = peers._load(spec)[1]
    else:
        peers.CALLBACKS[:] = [clock]
        _wall, steps, model, tok = {"trl_default": lambda: peers.run_trl(spec, out, train, val, best=False),
                                    "trl_fp32": lambda: peers.run_trl(spec, out, train, val, best=False, bf16=False),
                                    "plain": lambda: peers.run_plain(spec, out, train, val)}[peer]()
    peak_mb = peers.PEAK_MB
    checkpointed = bool(getattr(model, "is_activation_checkpointing", False))  # what the run trained with
    vloss = peers._val_loss(model, tok, peers._encoded(spec, tok, val))
    wall = clock.t1 - clock.t0
    print("SWEEP " + json.dumps({"steps": steps, "measured_steps": clock.steps, "measured_tokens": clock.tokens,
                                 "measured_s": wall, "tokens_per_s": clock.tokens / wall, "peak_rss_mb": peak_mb,
                                 "val_loss": vloss, "threads": torch.get_num_threads(),
                                 "gradient_checkpointing": checkpointed, "load_peak_mb": load_peak_mb}))


def qlora_probe() -> None:
    """A 4-bit NF4 linear layer quantised, run forward and backward on this machine's CPU (exits non-zero if not)."""
    import torch
    from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    conf = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4)
    with tempfile.TemporaryDirectory() as d:
        LlamaForCausalLM(conf).save_pretrained(d)
        m = LlamaForCausalLM.from_pretrained(d, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32))
    x = torch.randint(0, 256, (1, 8))
    emb = m.get_input_embeddings()(x).detach().requires_grad_(True)
    m(inputs_embeds=emb, labels=x).loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    print("qlora probe: ok")


# ---------------------------------------------------------------- the sweep

def _child(args: list[str], timeout: float) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent / "src"), str(HERE.parent)]),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
    try:
        p = subprocess.run([sys.executable, "-m", "bench.sweep", *args], capture_output=True, text=True, env=env,
                           timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired as e:
        return 124, e.stdout if isinstance(e.stdout, str) else "", f"timed out after {timeout:.0f} s (the cell's limit)"
    return p.returncode, p.stdout, p.stderr


def params_of(model_dir: Path) -> int:
    from tunewise.models.inspect import model_summary

    return model_summary(model_dir)["parameters"]["total"]


def sweep(sizes: dict, methods: list[str], peers: list[str], tokenizer_from: str, cache: Path, results: Path,
          cell_timeout: float, deadline: float | None, budget: float, threads: int,
          checkpoint: str = "bfloat16") -> list[dict]:
    from bench.memory import predict

    work = Path(tempfile.mkdtemp(prefix="tw-sweep-"))
    rows = load_rows(results)
    qlora_note = None
    if "qlora" in methods:
        rc, out, err = _child(["probe-qlora"], 300)
        qlora_note = None if rc == 0 else f"qlora: not available on CPU here ({(err or out).strip().splitlines()[-1][:200]})"
    for size, shape in sizes.items():
        left = (deadline - time.time()) if deadline else 1e9
        rc, out, err = _child(["build", size, json.dumps(shape), tokenizer_from, str(cache), checkpoint], min(1800, left))
        if rc != 0:
            for method in methods:
                for peer in peers:
                    rows = put(rows, {"size": size, "method": method, "peer": peer, "skipped": f"model build failed: {err[-300:]}"})
            continue
        model = Path(out.strip().splitlines()[-1])
        n_params = params_of(model)
        data_dir = work / size
        data_dir.mkdir()
        data = build_data(data_dir, model, n_train=SETTINGS["batch_size"] * (SETTINGS["warmup_steps"] + SETTINGS["measured_steps"]),
                          n_val=8)
        for method in methods:
            cell = data_dir / method
            cell.mkdir()
            base = {"size": size, "method": method, "params": n_params, "shape": shape, "checkpoint": checkpoint}
            configs, estimates = {}, {}
            for variant in ["tunewise"] + [p for p in peers if p.startswith("tunewise_")]:
                configs[variant] = tunewise_config(cell, model, method, data, threads, variant)
                try:
                    estimates[variant] = predict(configs[variant])["total"]
                except Exception as e:  # noqa: BLE001  (the estimate failing is itself a finding, not a crash)
                    estimates[variant] = None
                    base["estimate_error"] = f"{type(e).__name__}: {e}"[:300]
            for peer in peers:
                est = estimates.get(peer, estimates["tunewise"])
                cfg = configs.get(peer, configs["tunewise"])
                row = dict(base, peer=peer, estimate_bytes=est)
                limit = min(cell_timeout, (deadline - time.time()) if deadline else cell_timeout)
                if method == "qlora" and qlora_note:
                    row["skipped"] = qlora_note
                elif est is not None and est > budget:
                    row["skipped"] = (f"estimated {est / GiB:.1f} GiB > the {budget / GiB:.1f} GiB allowed here "
                                      "(fp32 AdamW keeps ~16 bytes per parameter)")
                elif limit < 30:
                    row["skipped"] = "not run: the sweep's deadline had passed"
                else:
                    print(f"[sweep] {size} {method} {peer} (limit {limit:.0f} s) ...", file=sys.stderr, flush=True)
                    spec = dict(model=str(model), tunewise_config=str(cfg), method=method, threads=threads,
                                epochs=1, max_steps=SETTINGS["warmup_steps"] + SETTINGS["measured_steps"],
                                **{k: v for k, v in SETTINGS.items() if k not in ("lora_r", "lora_alpha")},
                                **{k: v for k, v in data.items() if k != "lengths"})
                    (cell / f"{peer}.json").write_text(json.dumps(spec))
                    t0 = time.time()
                    rc, out, err = _child(["cell", peer, str(cell / f"{peer}.json")], limit)
                    line = next((x for x in out.splitlines() if x.startswith("SWEEP ")), None)
                    if rc == 0 and line:
                        row.update(json.loads(line[6:]))
                    else:
                        row["failed"] = (err or out).strip()[-400:]
                    row["cell_s"] = round(time.time() - t0)
                    print(f"[sweep]   {json.dumps({k: row.get(k) for k in ('tokens_per_s', 'peak_rss_mb', 'val_loss', 'failed')})}",
                          file=sys.stderr, flush=True)
                row["machine"] = machine()
                row["data_lengths"], row["tokenizer"] = data["lengths"], tokenizer_from
                rows = put(rows, row)
                results.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def machine() -> str:
    import torch
    import transformers
    import trl

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    cpu = ""
    try:
        cpu = next(x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")) + ", "
    except (OSError, StopIteration):
        pass
    return (f"{cpu}{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, no GPU; Python {platform.python_version()}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")


def load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def put(rows: list[dict], row: dict) -> list[dict]:
    """Replace the row of the same cell (size, method, peer), or add it."""
    key = (row["size"], row["method"], row["peer"])
    return [r for r in rows if (r["size"], r["method"], r["peer"]) != key] + [row]


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench --sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one tiny shape, LoRA, seconds: proves the harness works")
    ap.add_argument("--sizes", default=None, help=f"comma-separated, from {','.join(SHAPES)} (default: the first three)")
    ap.add_argument("--methods", default=None, help=f"comma-separated, from {','.join(METHODS)} (default: all)")
    ap.add_argument("--peers", default=",".join(DEFAULT_PEERS), help=f"comma-separated, from {','.join(PEERS)}")
    ap.add_argument("--cell-timeout", type=float, default=900, help="seconds one cell may run before it is killed")
    ap.add_argument("--deadline", default=None, help="HH:MM (UTC): start no cell that could not end by then")
    ap.add_argument("--budget-gib", type=float, default=20.0,
                    help="skip cells whose advise estimate exceeds this (or 85%% of the memory available now)")
    ap.add_argument("--checkpoint-dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="the dtype the random models are saved in (default bfloat16: as the families publish them)")
    ap.add_argument("--cache", default=None, help="model folder cache (default: <tmp>/tw-sweep-models)")
    ap.add_argument("--results", default=None, help="raw rows, merged across runs (default bench/sweep.json; --quick: temp)")
    ap.add_argument("--out", default=None, help="the markdown (default bench/SWEEP.md; --quick: next to --results)")
    ap.add_argument("--report-only", action="store_true", help="render the markdown and the plot from --results; run nothing")
    a = ap.parse_args(argv)
    import psutil

    from bench.sweep_report import write_report

    sizes = QUICK_SHAPES if a.quick else {k: SHAPES[k] for k in (a.sizes.split(",") if a.sizes else list(SHAPES)[:3])}
    methods = (a.methods or ("lora" if a.quick else ",".join(METHODS))).split(",")
    peers = a.peers.split(",")
    for name, allowed in (("method", METHODS), ("peer", PEERS)):
        bad = [x for x in (methods if name == "method" else peers) if x not in allowed]
        if bad:
            raise SystemExit(f"unknown {name} {bad}: choose from {', '.join(allowed)}")
    tmp = Path(tempfile.gettempdir())
    cache = Path(a.cache) if a.cache else tmp / ("tw-sweep-quick" if a.quick else "tw-sweep-models")
    results = Path(a.results) if a.results else (Path(tempfile.mkdtemp(prefix="tw-sweep-q-")) / "sweep.json" if a.quick
                                                 else HERE / "sweep.json")
    out = Path(a.out) if a.out else (results.with_name("SWEEP.md") if a.quick else HERE / "SWEEP.md")
    deadline = None
    if a.deadline:
        hh, mm = map(int, a.deadline.split(":"))
        now = time.gmtime()
        deadline = time.time() + ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    budget = min(a.budget_gib * GiB, 0.85 * psutil.virtual_memory().available)
    rows = load_rows(results) if a.report_only else sweep(sizes, methods, peers, QUICK_TOKENIZER if a.quick else TOKENIZER, cache, results, a.cell_timeout,
                 deadline, budget, threads=os.cpu_count() or 1, checkpoint=a.checkpoint_dtype)
    md = write_report(rows, out, HERE / "sweep.png" if not a.quick else out.with_name("sweep.png"))
    print(md)
    print(f"[sweep] wrote {out} and {results}", file=sys.stderr)
    return 0 if all("failed" not in r for r in rows) else 1


if __name__ == "__main__":  # the sweep's child processes: build SIZE SHAPE_JSON TOKENIZER CACHE | cell PEER SPEC | probe-qlora
    sys.path.insert(0, str(HERE.parent / "src"))
    cmd = sys.argv[1]
    if cmd == "build":
        print(build_model(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], Path(sys.argv[5]), *sys.argv[6:7]))
    elif cmd == "cell":
        cell_main(sys.argv[2], Path(sys.argv[3]))
    elif cmd == "probe-qlora":
        qlora_probe()
    else:
        raise SystemExit(f"unknown command {cmd!r}: build, cell or probe-qlora (the sweep itself: python -m bench --sweep)")
