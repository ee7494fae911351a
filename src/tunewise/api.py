"""The Python API: the stages the CLI runs, callable from a notebook or a script.

    import tunewise

    run = tunewise.train("examples/tiny.yaml", train__max_steps=20)    # -> tunewise.Run
    run.evaluate()["table"]                                           # before/after report (also in RUN/eval/)
    run.chat("Who are you?")                                          # the run's template, stop tokens, sampling
    run.export(gguf="q8_0", ollama=True)                              # push="me/my-model" also uploads it
    tunewise.Run("runs/tiny")                                         # open an existing run directory
    print(tunewise.advise("examples/tiny.yaml"))                      # memory per method, recommendations
    print(tunewise.explain("train.learning_rate", lang="zh"))

Config: a YAML path, a dict of sections (as in the YAML), or a loaded `tunewise.config.Config`.
Overrides: keyword arguments `section__key=value`, a double underscore where the CLI's `--set section.key=value`
has a dot (deeper keys the same way: `data__clean__dedup_near=False`); the value is a Python value. A dict with
dotted keys works too: `tunewise.train(cfg, **{"train.learning_rate": 1e-4})`.
Errors: the same `TunewiseError` subclasses the CLI prints (ConfigError, DataError, ModelError, RunError), each with
`.what`, `.where` and `.fix`; `str(error)` is the CLI's message.
Importing tunewise stays light: torch and transformers load when a stage first needs them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["Run", "advise", "explain", "load_config", "prepare_data", "train"]


def _key(name: str) -> str:
    return name.replace("__", ".")


def load_config(config: Any = None, **overrides):
    """A validated, resolved Config from a YAML path, a dict of sections or a Config, with overrides applied."""
    import copy

    from tunewise.config import Config
    from tunewise.config import load_config as load
    from tunewise.errors import ConfigError

    values = {_key(k): v for k, v in overrides.items()}
    if isinstance(config, Config):
        return load(None, base=config.model_dump(mode="json"), values=values)
    if isinstance(config, (str, os.PathLike)):
        return load(config, values=values)
    if isinstance(config, dict) or config is None:
        return load(None, base=copy.deepcopy(config or {}), values=values)  # the caller's dict stays as it was
    raise ConfigError(f"a config is a YAML path, a dict of sections or a Config, not {type(config).__name__}",
                      where="tunewise API", fix="pass e.g. 'examples/tiny.yaml' or {'model': {...}, 'data': {...}}")


def train(config: Any, *, resume: bool = False, overwrite: bool = False, strict_lint: bool = False, **overrides) -> Run:
    """Fine-tune as the config says (the stage behind `tunewise train`); returns the run.

    resume: continue from the newest checkpoint; overwrite: delete an existing run of the same name first;
    strict_lint: refuse to train when the config lint finds anything.
    """
    from functools import partial

    from tunewise.advise.lint import lint_before_training
    from tunewise.train.workflow import train as train_stage

    return Run(train_stage(load_config(config, **overrides), resume=resume, overwrite=overwrite,
                           before_fit=partial(lint_before_training, strict=strict_lint)))


def prepare_data(config: Any, *, out: str | os.PathLike | None = None, overwrite: bool = False, **overrides) -> Path:
    """Read, clean, split and report the data (`tunewise data prepare`); returns the data/ folder written.
    A trained run's data is replaced only with overwrite=True (which starts that run over)."""
    from tunewise.data.commands import prepare_command

    return prepare_command(load_config(config, **overrides), out=str(out) if out else None, overwrite=overwrite)


class Advice(dict):
    """`tunewise advise`'s result: a dict (hardware, model, data, memory, recommendations, reasons, lint);
    str() gives the report the CLI prints."""

    lang = "en"

    def __str__(self) -> str:
        from tunewise.advise.report import format_advice

        return format_advice(self, self.lang)


def advise(config: Any, *, nproc: int = 1, lang: str = "en", explicit: frozenset[str] | None = None,
           measure: bool = False, budgets: list[float] | None = None, family: str | None = None,
           **overrides) -> Advice:
    """Peak memory per method on this machine and recommended settings for the config (`tunewise advise`).

    explicit: the keys the user set (to tell them from defaults); by default the keys of the YAML/dict and overrides.
    measure: on a CPU, time a few training steps at each per-device batch size that fits (a few minutes) and
    advise the fastest (`tunewise advise --measure`).
    budgets / family: the largest model of the family (the configured model's, or `family`: a key of
    advise/sizes.yaml) each method fits here and in each of these GiB sizes (`--budgets 8,16,24`).
    """
    from tunewise.advise.advise import advise_config
    from tunewise.hardware import detect_hardware
    from tunewise.errors import ConfigError

    if nproc < 1:
        raise ConfigError("nproc must be at least 1", where="nproc")
    cfg = load_config(config, **overrides)
    if explicit is None:
        explicit = _explicit_keys(config, overrides)
    measurer = None
    if measure:
        from tunewise.advise.measure import speed_of
        from tunewise.console import say

        measurer = lambda c, batches: speed_of(c, batches, say=say)  # noqa: E731
    result = Advice(advise_config(cfg, detect_hardware(), nproc=nproc, explicit=explicit, measure=measurer,
                                  budgets=budgets, family=family))
    result.lang = lang
    return result


def _explicit_keys(config: Any, overrides: dict) -> frozenset[str] | None:
    from tunewise.config.load import read_yaml

    if isinstance(config, (str, os.PathLike)):
        raw = read_yaml(Path(config))
    elif isinstance(config, dict):
        raw = config
    else:
        return None  # a loaded Config no longer knows which keys were written
    out: set[str] = set()

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.add(key)
            if isinstance(v, dict):
                walk(v, key)

    walk(raw, "")
    return frozenset(out | {_key(k) for k in overrides})


def explain(key: str | None = None, *, lang: str = "en") -> str:
    """What a config key does, too high / too low, a typical value (`tunewise explain`); no key: an overview."""
    from tunewise.advise.explain import format_key, format_overview

    return format_key(key, lang) if key else format_overview(lang)


class Run:
    """A run directory (`runs/<name>/`) and the stages that read it: evaluate, chat, export.

    `Run(path)` opens an existing run; `tunewise.train(...)` returns one. It behaves as a path (os.fspath(run)).
    """

    def __init__(self, path: str | os.PathLike):
        from tunewise.runs import require_run

        self.path = require_run(path)
        self._models: dict = {}  # loaded models for chat, kept between calls

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"tunewise.Run('{self.path}')"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self):
        """The resolved config the run was trained with (config.yaml)."""
        from tunewise.runs import read_run_config

        return read_run_config(self.path)

    @property
    def summary(self) -> dict:
        """train_summary.json: steps, losses, best checkpoint, trainable parameters ({} before training ends)."""
        from tunewise.fileio import read_json
        from tunewise.runs import RunDir

        p = RunDir(self.path).summary
        return read_json(p) if p.exists() else {}

    @property
    def metrics(self) -> list[dict]:
        """metrics.jsonl: one dict per logging step (loss, val_loss, lr, grad_norm, tokens/s)."""
        from tunewise.fileio import read_jsonl
        from tunewise.runs import RunDir

        p = RunDir(self.path).metrics
        return [row for _, row in read_jsonl(p)] if p.exists() else []

    def evaluate(self, *, data: list[str] | None = None, max_samples: int | None = None, forgetting: bool = True,
                 checkpoint: str | None = None, max_new_tokens: int | None = None) -> dict:
        """Base vs tuned (`tunewise eval`): loss, ROUGE, BLEU, stopping, forgetting probes. Written to RUN/eval/;
        returns the report (its "table" holds the header and rows the CLI prints)."""
        from tunewise.evaluate.runner import run_eval

        return run_eval(self.path, data=data, max_samples=max_samples, forgetting=forgetting, checkpoint=checkpoint,
                        max_new_tokens=max_new_tokens)

    def chat(self, prompt: str, *, system: str | None = None, history: list[dict] | None = None, base: bool = False,
             checkpoint: str | None = None, stream: bool = False, seed: int | None = None,
             tools: list[dict] | None = None, **sampling) -> str:
        """One answer of the trained model (base=True: the base model) with the run's template and stop tokens.

        history: earlier turns as [{"role": "user"|"assistant", "content": ...}]; sampling: temperature, top_k,
        top_p, repetition_penalty, max_new_tokens (default: the run's generation section). stream prints tokens
        as they come. The model stays loaded for the next call. tools: functions the model may call (OpenAI's form),
        rendered as in training; its calls come back in the text, read them with
        `tunewise.templates.tools.parse_answer`.
        """
        from tunewise.infer.chat import ChatSession

        key = (base, str(checkpoint) if checkpoint else None)
        session = ChatSession(self.path, base=base, checkpoint=checkpoint, system=system, lm=self._models.get(key),
                              tools=tools, **sampling)
        self._models[key] = session.lm
        session.history += list(history or [])
        return session.ask(prompt, stream=stream, seed=seed)["text"]

    def export(self, *, gguf: str | None = None, ollama: bool = False, push: str | None = None, private: bool = False,
               merge: bool = True, dtype: str = "float32", out: str | os.PathLike | None = None, name: str | None = None,
               checkpoint: str | None = None, verify_prompts: int = 4, verify_tokens: int = 32) -> dict:
        """Merge, and optionally GGUF (verified against this model), Ollama Modelfile and push to the Hub
        (`tunewise export`). Returns what was written: merged, gguf, modelfile, verify (PASS/FAIL), url ...

        push="NAME/REPO" uploads in one commit with a model card; merge=False pushes the adapter unmerged.
        """
        from tunewise.export.run import export_run

        return export_run(self.path, dtype=dtype, out=out, gguf=gguf, ollama=ollama, name=name, push=push,
                          private=private, checkpoint=checkpoint, verify_prompts=verify_prompts,
                          verify_tokens=verify_tokens, merge=merge)
