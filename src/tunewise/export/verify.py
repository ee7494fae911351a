"""Does the GGUF answer like the trained model? Greedy answers from both, compared token by token.

Free-running answers part for good at the first near-tie a quantised file breaks the other way, which
says little when the model is unsure (undertrained, or a base model rambling). So drift is also judged
teacher-forced: both read the trained model's answer, and at each position the GGUF's logits must
match the trained model's up to the type's rounding error, relative to the logits' own spread (so a
nearly flat, unsure distribution is held to the same standard as a confident one). A file that computes
something else (wrong weights, a wrong attention pattern) is off by the order of the logits themselves.

The prompt on the GGUF side is built the way the runtime will build it: from the Modelfile TEMPLATE
(Ollama) when there is one, else from the chat template embedded in the GGUF, tokenized by llama.cpp.
A stop counts only when it is *declared*: the GGUF's EOS/EOT ids or a Modelfile `stop`, so a model that
ends its turn with a token nobody declared is caught (the "drunk in Ollama" bug), not excused.

A run trained with tools is also checked where tools matter: every prompt carries the tools its record offered,
and one of them is a prompt whose answer should be a call (a held-out record up to its first call, else a built-in
question with the sample tools). Both answers are read back into calls by the parser chat and eval use
(templates/tools.parse_answer); the export fails when the GGUF calls other functions or arguments than the trained
model, even where the answers' tokens are otherwise close enough.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from tunewise.export.gguf import QUANTISED
from tunewise.export.ollama import modelfile_differences, parse_modelfile, render_ollama
from tunewise.fileio import read_jsonl, write_json
from tunewise.templates import ChatTemplate
from tunewise.templates.tools import HERMES, has_tool_content, normalize_call, normalize_tools, parse_answer

# Share of the HF answer (tokens) the GGUF answer must reproduce from the start, by GGUF type, on
# average over the prompts. Stopping must agree for every type.
# q4_k_m: measured 0.78 mean (worst prompt 0.47) on a Gemma 3 270M LoRA run; 0.25 still catches a broken file.
MIN_PREFIX = {"f32": 0.9, "f16": 0.75, "bf16": 0.5, "q8_0": 0.5, "q4_k_m": 0.25}
# Teacher-forced: median over answer positions of |gguf - hf| / |hf| on mean-centred logit vectors.
MAX_LOGIT_ERROR = {"f32": 0.01, "f16": 0.03, "bf16": 0.08, "q8_0": 0.15, "q4_k_m": 0.4}

FIXES = {
    "template": "re-export with `tunewise export RUN --gguf TYPE --ollama` and do not edit the Modelfile TEMPLATE "
                "or the GGUF chat template: they must render exactly the training template (template.json)",
    "stop": "declare every end-of-turn token: re-export (tunewise writes them as the GGUF EOS/EOT and as "
            "PARAMETER stop lines), or add `PARAMETER stop \"<token>\"` for the token named above to the Modelfile",
    "tokenizer": "llama.cpp splits the prompt into different tokens than the training tokenizer; use a base model "
                 "whose tokenizer llama.cpp supports, or serve the merged model (export/merged) with transformers",
    "drift_quant": "quantisation changed the answers: export a wider type (--gguf f16; q8_0 instead of q4_k_m)",
    "modelfile": "re-export with `tunewise export RUN --gguf TYPE --ollama` and use the Modelfile as written: every "
                 "line of it is checked against what the export intended, and an edited or injected line changes what "
                 "Ollama runs",
    "drift": "the converted weights do not compute what the trained model computes: re-export with --gguf f32 "
             "to rule out precision, and report the model architecture if that also fails",
    "tool_calls_quant": "quantisation changed which function the model calls or with what: export a wider type "
                        "(--gguf f16; q8_0 instead of q4_k_m)",
    "tool_calls": "the converted model calls other functions or arguments than the trained model on the same "
                  "prompt: re-export with --gguf f32 to rule out precision, and report the model architecture if "
                  "that also fails",
}
# A call is its tags and JSON, some 30-60 tokens: a call prompt's answers get at least this many, since two calls cut
# off mid-JSON would both be unparsable and so "agree".
TOOL_ANSWER_TOKENS = 128
# The call prompt of a run with tools whose data holds no record that calls (tunewise.samples.tools.TOOLS offered).
TOOL_PROBE = [{"role": "user", "content": "What's the weather like in Paris right now?"}]


def _record(rec: dict, where: str) -> tuple[list[dict], list[dict] | None]:
    """A data record's turns (calls with their arguments as objects) and the tools it offers (None: none)."""
    from tunewise.errors import RunError
    from tunewise.templates.tools import ToolError

    try:
        tools = normalize_tools(rec.get("tools"), "tools") or None
        msgs = [dict(m, tool_calls=[normalize_call(c, f"messages[{i}].tool_calls[{j}]")
                                    for j, c in enumerate(m["tool_calls"])]) if m.get("tool_calls") else m
                for i, m in enumerate(rec.get("messages") or [])]
    except ToolError as e:
        raise RunError(f"the run's data has unusable tools ({e})", where=where,
                       fix="the run directory is damaged: re-run `tunewise train` with --overwrite") from None
    return msgs, tools


def held_out_prompts(run, n: int) -> list[dict]:
    """Conversations up to (not including) their last assistant turn, from val.jsonl else train.jsonl, each with the
    tools its record offers: {"messages", "tools"}."""
    from tunewise.runs import RunDir

    rd = RunDir(run)
    out = []
    for path in (rd.val_data, rd.train_data):
        if not path.exists():
            continue
        for lineno, rec in read_jsonl(path):
            msgs, tools = _record(rec, f"{path}:{lineno}")
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last:
                out.append({"messages": msgs[:last], "tools": tools})
            if len(out) >= n:
                return out
        if out:
            return out
    return out


def call_prompt(run) -> dict | None:
    """For a run trained with tools, a prompt whose answer should be a call: a record with tools (val.jsonl first)
    up to its first assistant turn that calls, with the record's tools; else `TOOL_PROBE` with the sample tools.
    None for a run without tools."""
    from tunewise.runs import RunDir
    from tunewise.samples.tools import TOOLS

    rd = RunDir.open(run)
    if not rd.uses_tools:
        return None
    for path in (rd.val_data, rd.train_data):
        if not path.exists():
            continue
        for lineno, rec in read_jsonl(path):
            msgs, tools = _record(rec, f"{path}:{lineno}")
            first = next((i for i, m in enumerate(msgs) if m["role"] == "assistant" and m.get("tool_calls")), None)
            if tools and first:
                return {"messages": msgs[:first], "tools": tools, "call": True}
    return {"messages": TOOL_PROBE, "tools": TOOLS, "call": True}


def _prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _meta_int(meta: dict, key: str) -> int | None:
    v = meta.get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


@contextmanager
def _without_weight_repacking():
    """Llama() loads the weights without llama.cpp's extra CPU buffer types (use_extra_bufts false, what
    llama.cpp's `--no-repack` sets): on CPUs with AMX, ggml repacks q8_0 weights into AMX tiles and its AMX
    matmul crashed the process (SIGSEGV in ggml_backend_amx_mul_mat, llama-cpp-python 0.3.36, Gemma 3 270M);
    the plain CPU kernels compute the same model. llama-cpp-python's Llama takes no such argument, so its
    default-parameters function is wrapped while one model loads."""
    import llama_cpp.llama_cpp as lc

    default = lc.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    lc.llama_model_default_params = params
    try:
        yield
    finally:
        lc.llama_model_default_params = default


class _GGUF:
    def __init__(self, path: Path, n_ctx: int):
        try:
            from llama_cpp import Llama
        except ImportError:
            from tunewise.errors import ModelError
            from tunewise.extras import install_hint

            raise ModelError("llama-cpp-python is not installed, so the GGUF cannot be verified", where="tunewise[export]",
                             fix=install_hint("export")) from None
        with _without_weight_repacking():
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=max(1, os.cpu_count() or 1),
                             n_batch=min(512, n_ctx), verbose=False, seed=0, logits_all=True)
        self.meta = dict(self.llm.metadata)
        self.add_bos = self.meta.get("tokenizer.ggml.add_bos_token", "false").lower() == "true"
        self.chat_template = self.meta.get("tokenizer.chat_template")
        self.stop_ids = {i for i in (_meta_int(self.meta, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom"))
                         if i is not None}

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def piece(self, tok: int) -> str:
        return self.llm.detokenize([tok], special=True).decode("utf-8", errors="replace")

    def greedy(self, ids: list[int], max_new: int, stop_strings: list[str]) -> tuple[list[int], bool, int | None]:
        out: list[int] = []
        for tok in self.llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if tok in self.stop_ids or (stop_strings and any(s in self.piece(tok) for s in stop_strings)):
                return out, True, tok
            out.append(tok)
            if len(out) >= max_new:
                break
        return out, False, None

    def forced_logits(self, ids: list[int], answer: list[int]):
        """(len(answer), vocab) logits predicting each answer token, reading ids + answer."""
        self.llm.reset()
        self.llm.eval(ids + answer)
        return self.llm.scores[len(ids) - 1: len(ids) - 1 + len(answer)].copy()

    def close(self) -> None:
        self.llm.close()


def _hf_logits(lm, ids: list[int], answer: list[int]):
    import torch

    with torch.no_grad():
        out = lm.model(input_ids=torch.tensor([ids + answer], device=lm.model.device)).logits[0]
    return out[len(ids) - 1: len(ids) - 1 + len(answer)].float().cpu().numpy()


def logit_error(hf, gguf) -> float:
    """Median over answer positions of the relative error between mean-centred logit vectors."""
    import numpy as np

    h = hf - hf.mean(axis=1, keepdims=True)
    g = gguf[:, : h.shape[1]] - gguf[:, : h.shape[1]].mean(axis=1, keepdims=True)
    return float(np.median(np.linalg.norm(g - h, axis=1) / np.maximum(np.linalg.norm(h, axis=1), 1e-12)))


def _gguf_prompt(g: _GGUF, template: ChatTemplate, msgs: list[dict], modelfile: dict | None,
                 tools: list[dict] | None = None) -> tuple[str, list[int]]:
    """(prompt text as the runtime builds it, with an added BOS written out; token ids).

    With tools: Ollama renders them through the Modelfile TEMPLATE. Without a Modelfile, a run that rendered tools
    natively has them rendered by the embedded (tokenizer's) template, as llama.cpp's Jinja does; the embedded
    template of a hermes run cannot write the hermes form, so the conversation is rewritten first, as a client of
    the GGUF must do (templates/tools.to_hermes), and the template renders the plain turns."""
    bos = template.bos_token or ""
    if modelfile is not None:
        if modelfile.get("system") and not (msgs and msgs[0]["role"] == "system"):
            msgs = [{"role": "system", "content": modelfile["system"]}, *msgs]  # Ollama gives SYSTEM to such requests
        text = render_ollama(modelfile.get("template", "{{ .Prompt }}"), msgs, tools=tools)
    else:
        embedded = ChatTemplate(name="gguf", chat_template=g.chat_template or "", bos_token=bos,
                                eos_token=template.eos_token, tools=template.tool_format)
        if (tools or has_tool_content(msgs)) and template.tool_format == HERMES:
            msgs, tools = template.prepare(msgs, tools)[0], None
        text = embedded.render(msgs, add_generation_prompt=True, tools=tools) if g.chat_template else ""
        if g.add_bos and bos and text.startswith(bos):  # llama.cpp drops a rendered BOS it adds itself
            text = text[len(bos):]
    ids = g.tokenize(text)
    return (bos + text if g.add_bos and bos else text), ids


def modelfile_verdict(problems: list[str], gguf_type: str) -> dict:
    """FAIL before any generation: the Modelfile on disk is not the one the export intended."""
    return {"status": "FAIL", "cause": "Modelfile: it does not read back as the export wrote it: " + problems[0]
            + (f" (and {len(problems) - 1} more difference(s))" if len(problems) > 1 else ""),
            "fix": FIXES["modelfile"], "gguf_type": gguf_type, "checked_prompts": 0, "prefix_agreement": 0.0,
            "logit_error": None, "stops_agree": False, "templates_agree": False, "tokens_agree": False,
            "tool_calls_agree": None, "modelfile_agrees": False, "prompts": []}


def hf_reference(lm, prompts: list[dict | list[dict]], max_new_tokens: int) -> list[dict]:
    """The trained model's side of the verification, per prompt ({"messages", "tools", "call"} or a bare
    conversation): its prompt ids, greedy answer and the logits predicting that answer; a call prompt's answer gets
    at least TOOL_ANSWER_TOKENS. Computed before the merge (export hands in the model it then merges), so the GGUF
    is checked against the model as trained, not against the merge that produced it. Prompts of one token budget
    are answered in one batch: decoding reads every weight once a step for the whole batch (Gemma 3 270M, 4 prompts:
    15 s one by one on a CPU core)."""
    from tunewise.infer.generate import build_prompt, generate

    items = [p if isinstance(p, dict) else {"messages": p} for p in prompts]
    budgets = [max(max_new_tokens, TOOL_ANSWER_TOKENS) if p.get("call") else max_new_tokens for p in items]
    answers: list = [None] * len(items)
    for budget in sorted(set(budgets)):
        idx = [i for i, b in enumerate(budgets) if b == budget]
        res = generate(lm, [items[i]["messages"] for i in idx], max_new_tokens=budget, temperature=0.0,
                       repetition_penalty=1.0, batch_size=len(idx), tools=[items[i].get("tools") for i in idx])
        for i, r in zip(idx, res):
            answers[i] = r
    out = []
    for p, budget, hf in zip(items, budgets, answers):
        msgs, tools = p["messages"], p.get("tools")
        ids = build_prompt(lm, msgs, tools)
        answer = list(hf["token_ids"])
        out.append({"messages": msgs, "tools": tools, "call": bool(p.get("call")), "max_new_tokens": budget,
                    "ids": ids, "answer": hf, "logits": _hf_logits(lm, ids, answer) if answer else None})
    return out


def reference_prompts(run, n_prompts: int) -> list[dict]:
    """The verification prompts: held-out conversations (with their tools); for a run with tools, a call prompt
    first, so even --verify-prompts 1 checks a call."""
    prompts = held_out_prompts(run, n_prompts) or [{"messages": [{"role": "user", "content": "Who are you?"}],
                                                    "tools": None}]
    call = call_prompt(run)
    if call is None:
        return prompts
    return [call] + [p for p in prompts if p["messages"] != call["messages"]][: max(n_prompts - 1, 0)]


def verify_gguf(run, gguf_path: Path, gguf_type: str, *, modelfile_path: Path | None = None,
                n_prompts: int = 4, max_new_tokens: int = 32, lm=None, reference: list[dict] | None = None,
                modelfile_intended: list[tuple[str, str]] | None = None) -> dict:
    """Compare the GGUF (and its Modelfile) with the trained model. `modelfile_intended`: the command list the
    export meant to write; the whole Modelfile, parsed as Ollama parses it, must equal it. `reference`: the
    trained model's side, from `hf_reference` (else computed here with `lm`, else with the run's model)."""
    from tunewise.infer.generate import load_run_model
    from tunewise.runs import RunDir

    rd = RunDir.open(run)
    template = rd.template
    modelfile = None
    if modelfile_path:
        text = modelfile_path.read_text(encoding="utf-8")
        problems = modelfile_differences(text, modelfile_intended) if modelfile_intended is not None else []
        if not problems:
            try:
                modelfile = parse_modelfile(text)
            except ValueError as e:
                problems = [f"Ollama cannot parse it ({e})"]
        if problems:
            return modelfile_verdict(problems, gguf_type)
    if reference is None:
        reference = hf_reference(lm or load_run_model(rd), reference_prompts(rd, n_prompts), max_new_tokens)
    stop_strings = modelfile["stop"] if modelfile else []
    g = _GGUF(gguf_path, n_ctx=max(len(r["ids"]) + r.get("max_new_tokens", max_new_tokens) for r in reference) + 16)
    rows = []
    try:
        for ref in reference:
            msgs, ids_hf, hf, tools = ref["messages"], ref["ids"], ref["answer"], ref.get("tools")
            train_text = template.render(msgs, add_generation_prompt=True, tools=tools)
            gguf_text, ids_gguf = _gguf_prompt(g, template, msgs, modelfile, tools)
            toks, stopped, stop_tok = g.greedy(ids_gguf, ref.get("max_new_tokens", max_new_tokens), stop_strings)
            same_text_ids = g.tokenize(train_text, add_special=False) == ids_hf
            answer = list(hf["token_ids"])
            err = logit_error(ref["logits"], g.forced_logits(ids_gguf, answer)) if answer else None
            gguf_answer = g.llm.detokenize(toks).decode("utf-8", errors="replace").strip()
            rows.append({
                "prompt": (msgs[-1].get("content") or "")[:200],
                **(_calls_row(hf["text"], gguf_answer, tools, ref.get("call")) if tools or ref.get("call") else {}),
                "hf_text": hf["text"], "gguf_text": gguf_answer,
                "hf_stopped": hf["stopped"], "gguf_stopped": stopped,
                "gguf_stop_token": g.piece(stop_tok) if stop_tok is not None else None,
                "hf_tokens": len(hf["token_ids"]), "gguf_tokens": len(toks),
                "match_tokens_prefix": _prefix(hf["token_ids"], toks),
                "logit_error": None if err is None else round(err, 4),
                "template_match": gguf_text == train_text, "prompt_tokens_match": ids_gguf == ids_hf,
                "tokenizer_match": same_text_ids,
                "_hf_ids": hf["token_ids"], "_gguf_ids": toks, "_train_text": train_text, "_gguf_text": gguf_text,
            })
    finally:
        g.close()
    return judge(rows, gguf_type, template, has_modelfile=modelfile is not None)


def _calls_row(hf_text: str, gguf_text: str, tools: list[dict] | None, call: bool | None) -> dict:
    """The calls in both answers to a prompt with tools, read by templates/tools.parse_answer, and whether they
    agree (the same calls, names and arguments, in the same order, and as many unparsable call blocks)."""
    hf, gguf = parse_answer(hf_text), parse_answer(gguf_text)
    return {"tools": [t["function"]["name"] for t in tools or []], "call_prompt": bool(call),
            "hf_calls": hf.calls, "gguf_calls": gguf.calls, "hf_invalid_calls": hf.invalid,
            "gguf_invalid_calls": gguf.invalid, "calls_match": hf.calls == gguf.calls and hf.invalid == gguf.invalid}


def gguf_answers(run: Path, gguf_path: Path, conversations: list[list[dict]], *, max_new_tokens: int = 128,
                 modelfile_path: Path | None = None, tools: list[list[dict] | None] | None = None) -> list[dict]:
    """Greedy answers of an exported GGUF, run by llama.cpp with the prompt the runtime builds (the Modelfile's
    TEMPLATE and SYSTEM when given, else the GGUF's embedded chat template) and only its declared stops. `tools`:
    the tools each conversation offers (None for none); each answer's calls are read back into `calls`."""
    from tunewise.runs import read_template

    template = read_template(run)
    modelfile = parse_modelfile(Path(modelfile_path).read_text(encoding="utf-8")) if modelfile_path else None
    stop_strings = modelfile["stop"] if modelfile else []
    tools = tools or [None] * len(conversations)
    probe = _GGUF(gguf_path, n_ctx=64)
    try:
        prompts = [_gguf_prompt(probe, template, msgs, modelfile, t)[1] for msgs, t in zip(conversations, tools)]
    finally:
        probe.close()
    g = _GGUF(gguf_path, n_ctx=max(len(p) for p in prompts) + max_new_tokens + 16)
    out = []
    try:
        for ids in prompts:
            toks, stopped, _ = g.greedy(ids, max_new_tokens, stop_strings)
            text = g.llm.detokenize(toks).decode("utf-8", errors="replace").strip()
            out.append({"text": text, "stopped": stopped, "num_new_tokens": len(toks),
                        "calls": parse_answer(text).calls})
    finally:
        g.close()
    return out


def judge(rows: list[dict], gguf_type: str, template: ChatTemplate, *, has_modelfile: bool) -> dict:
    where = "the Modelfile TEMPLATE" if has_modelfile else "the GGUF's chat template"
    cause = fix = None
    bad_tpl = [r for r in rows if not r["template_match"]]
    bad_tok = [r for r in rows if r["template_match"] and not r["prompt_tokens_match"]]
    # A stop differs by itself only where both answers were still the same when one of them stopped; where they
    # had already parted (a near-tie the quantised file broke the other way), the later stop is the drift's
    # consequence, judged below as drift, not a missing EOS.
    bad_stop = [r for r in rows if r["hf_stopped"] != r["gguf_stopped"]
                and r["match_tokens_prefix"] >= min(r["hf_tokens"], r["gguf_tokens"])]
    # Two empty answers (both stopped at once) agree fully; they are not a 0% match.
    ratios = [1.0 if r["hf_tokens"] == r["gguf_tokens"] == 0 else r["match_tokens_prefix"] / max(r["hf_tokens"], r["gguf_tokens"])
              for r in rows]
    mean_ratio = sum(ratios) / len(ratios) if ratios else 0.0
    tool_rows = [r for r in rows if "calls_match" in r]
    bad_calls = [r for r in tool_rows if not r["calls_match"]]
    errs = [r["logit_error"] for r in rows if r.get("logit_error") is not None]
    forced = max(errs) if errs else None
    max_err = MAX_LOGIT_ERROR.get(gguf_type, 0.03)
    if bad_tpl:
        r = bad_tpl[0]
        cause = (f"template: {where} builds a different prompt than training. Training: {r['_train_text'][:160]!r} "
                 f"vs export: {r['_gguf_text'][:160]!r}")
        fix = FIXES["template"]
    elif bad_tok:
        cause = ("tokenizer mismatch: llama.cpp tokenizes the prompt differently from the training tokenizer"
                 + ("" if bad_tok[0]["tokenizer_match"] else " (even the identical text)"))
        fix = FIXES["tokenizer"]
    elif bad_stop:
        r = bad_stop[0]
        stops = ", ".join(template.stop_strings)
        if r["hf_stopped"]:
            cause = (f"EOS/stop token: the trained model ends its turn with one of [{stops}], but the exported model "
                     "does not stop there (that token is not declared as EOS/EOT in the GGUF"
                     + (" or as PARAMETER stop in the Modelfile" if has_modelfile else "") + "), so it runs on")
        else:
            cause = (f"EOS/stop token: the exported model stops (on {r['gguf_stop_token']!r}) where the trained model "
                     "goes on; a stop is declared that the model does not use to end its turn")
        fix = FIXES["stop"]
    elif bad_calls:
        r = bad_calls[0]
        cause = (f"tool calls: on the same prompt with tools ({r['prompt'][:80]!r}) the exported model calls "
                 f"{_calls_text(r['gguf_calls'], r['gguf_invalid_calls'])}, the trained model "
                 f"{_calls_text(r['hf_calls'], r['hf_invalid_calls'])}")
        fix = FIXES["tool_calls_quant" if gguf_type in QUANTISED else "tool_calls"]
    elif mean_ratio < MIN_PREFIX.get(gguf_type, 0.75) and (forced is None or forced > max_err):
        quant = gguf_type in QUANTISED
        cause = (f"{'quantisation drift' if quant else 'numerical drift'}: the GGUF's greedy answers share only "
                 f"{mean_ratio:.0%} of their tokens from the start with the trained model's "
                 f"(needed: {MIN_PREFIX.get(gguf_type, 0.75):.0%} for {gguf_type})"
                 + ("" if forced is None else f", and reading the trained model's answers its logits are off by {forced:.1%} "
                    f"(allowed: {max_err:.0%} for {gguf_type})"))
        fix = FIXES["drift_quant" if quant else "drift"]
    status = "PASS" if cause is None else "FAIL"
    return {
        "status": status, "cause": cause, "fix": fix, "gguf_type": gguf_type,
        "checked_prompts": len(rows), "prefix_agreement": round(mean_ratio, 3),
        "logit_error": forced,
        "stops_agree": not bad_stop, "templates_agree": not bad_tpl, "tokens_agree": not bad_tok,
        "tool_calls_agree": (not bad_calls) if tool_rows else None, "tool_prompts": len(tool_rows),
        "prompts": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
    }


def _calls_text(calls: list[dict], invalid: int) -> str:
    parts = [f"{c['name']}({json.dumps(c['arguments'], ensure_ascii=False, sort_keys=True)})" for c in calls]
    if invalid:
        parts.append(f"{invalid} unparsable call(s)")
    return ", ".join(parts) if parts else "nothing"


def write_verdict(path: Path, verdict: dict) -> None:
    write_json(path, verdict)
    line = f"verify: {verdict['status']}"
    if verdict["status"] == "PASS":
        line += (f" ({verdict['checked_prompts']} held-out prompts: same prompt tokens, same stopping, "
                 f"{verdict['prefix_agreement']:.0%} of answer tokens identical from the start"
                 + ("" if verdict["logit_error"] is None else f", logits within {verdict['logit_error']:.1%} reading the same answers")
                 + (f", the same tool calls on {verdict['tool_prompts']} prompt(s) with tools"
                    if verdict.get("tool_prompts") else "")
                 + ")")
    print(line, file=sys.stderr if verdict["status"] == "FAIL" else sys.stdout, flush=True)
    if verdict["status"] == "FAIL":
        print(f"  cause: {verdict['cause']}\n  fix: {verdict['fix']}", file=sys.stderr, flush=True)
