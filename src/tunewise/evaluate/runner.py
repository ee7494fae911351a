"""`tunewise eval RUN`: the same prompts through the base and the tuned model, scored side by side.

Loss/perplexity are teacher-forced on the supervised tokens (exactly the training loss); generation
metrics come from greedy answers with the run's template and stop tokens, so "does it stop?" is
measured the way a user will meet it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tunewise.console import say as _say
from tunewise.evaluate.tools import ROWS as TOOL_ROWS
from tunewise.fileio import read_jsonl, write_json, write_jsonl, write_text
from tunewise.runs import RunDir, read_run_config, require_run


def load_eval_sets(run: Path, extra: list[str] | None, max_samples: int | None) -> dict[str, list[dict]]:
    from tunewise.config.schema import DatasetSpec
    from tunewise.data.prepare import read_dataset

    sets: dict[str, list[dict]] = {}
    val = RunDir(run).val_data
    if val.exists():
        recs = [r for _, r in read_jsonl(val) if "messages" in r]
        if recs:
            sets["val"] = recs
    for path in extra or []:
        recs, _ = read_dataset(DatasetSpec(path=str(Path(path).resolve())), dataset_info=None, strict=True)
        sets[Path(path).stem] = [r for r in recs if "messages" in r]
    return {k: v[:max_samples] if max_samples else v for k, v in sets.items()}


@torch.no_grad()
def mean_loss(lm, encoded: list, batch_size: int = 8) -> float | None:
    """Token-weighted mean loss over supervised tokens (what training minimises)."""
    from tunewise.train.collate import PadCollator, shared_or_padded
    from tunewise.train.trainer import causal_lm, supervised_loss

    if not encoded:
        return None
    # prompts that begin alike (a system prompt, tool definitions) computed once per batch, where exact
    plain = causal_lm(lm.model) is None
    collate = PadCollator(lm.tokenizer.pad_token_id) if plain else shared_or_padded(lm.model, lm.tokenizer.pad_token_id)
    total, count = 0.0, 0
    encoded = sorted(encoded, key=lambda e: len(e.input_ids))  # batches of like length pad less; the mean is the same
    for i in range(0, len(encoded), batch_size):
        batch = collate([{"input_ids": e.input_ids, "labels": e.labels} for e in encoded[i:i + batch_size]])
        n = int((batch["labels"][:, 1:] != -100).sum())
        if n == 0:
            continue
        if not plain:
            loss = supervised_loss(lm.model, batch, num_items=n)
        else:
            loss = lm.model(**batch).loss
        total += float(loss) * n
        count += n
    return total / count if count else None


def _encode_sft(lm, records, max_length):
    from tunewise.templates.encode import encode_records

    return encode_records(lm.tokenizer, lm.template, records, max_length=max_length)[0]


def _encode_text(lm, records, max_length):
    from tunewise.templates.encode import encode_pretrain

    return encode_pretrain(lm.tokenizer, records, block_size=max_length)[0]


def run_key_terms(run: Path) -> list[str]:
    """The terms the run's data teaches (a name, a maker, a label), as the generation check fixed them."""
    path = RunDir(run).metrics
    if not path.exists():
        return []
    for _, row in read_jsonl(path):
        if row.get("event") == "before_training":
            return list(row.get("key_terms") or [])
    return []


def evaluate_model(lm, sets: dict[str, list[dict]], cfg, general_text: list[dict], general_qa: list[dict],
                   max_new_tokens: int | None = None, key_terms: list[str] | None = None) -> dict:
    from tunewise.evaluate.tools import evaluate_tools
    from tunewise.infer.generate import generate
    from tunewise.textmetrics import key_term_hits, perplexity, score_generations

    out: dict = {"sets": {}, "predictions": {}}
    all_sets = dict(sets)
    if general_qa:
        all_sets["general_qa"] = general_qa
    for name, recs in all_sets.items():
        pairs = [r for r in recs if "rejected" in r]
        recs = [r for r in recs if r.get("label", True) is not False]  # kto: judged against the desirable answers
        loss = mean_loss(lm, _encode_sft(lm, recs, cfg.data.max_length), cfg.eval.batch_size)
        new_tokens = max_new_tokens or cfg.eval.max_new_tokens
        # Records with tools are answered turn by turn (evaluate/tools.py); the answer to a record's last turn is also
        # its item here, so no prompt is generated twice.
        tool_scores, tool_items = evaluate_tools(lm, recs, max_new_tokens=new_tokens, batch_size=cfg.eval.batch_size)
        last = {it["record"]: it for it in tool_items if it["last"]}
        plain = [i for i in range(len(recs)) if i not in last]
        gens = dict(zip(plain, generate(lm, [recs[i]["messages"][:-1] for i in plain], max_new_tokens=new_tokens,
                                        batch_size=cfg.eval.batch_size)))
        items = []
        for i, r in enumerate(recs):
            g = last.get(i) or {"prediction": gens[i]["text"], **gens[i]}
            items.append({"prompt": r["messages"][-2].get("content") or "", "reference": r["messages"][-1]["content"],
                          "prediction": g["prediction"], "hit_max_new_tokens": g["hit_max_new_tokens"],
                          "num_new_tokens": g["num_new_tokens"]})
        scores = score_generations(items)
        hits, judged = key_term_hits([it["prediction"] for it in items], [it["reference"] for it in items], key_terms or [])
        if judged and name != "general_qa":
            scores["key_term_rate"] = hits / judged  # answers naming what the data teaches, where the reference does
        scores["loss"] = loss
        scores["perplexity"] = perplexity(loss) if loss is not None else None
        lengths = sorted(it["num_new_tokens"] for it in items)
        if lengths:
            scores["answer_tokens_p50"] = lengths[len(lengths) // 2]
            scores["answer_tokens_p90"] = lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))]
        if pairs:
            scores.update(pair_scores(lm, pairs, cfg))
        scores.update(tool_scores)
        out["sets"][name] = scores
        out["predictions"][name] = items
        if tool_items:
            out["predictions"][f"{name}_tools"] = tool_items
    if general_text:
        loss = mean_loss(lm, _encode_text(lm, general_text, min(cfg.data.max_length, 256)), cfg.eval.batch_size)
        out["general_text"] = {"loss": loss, "perplexity": perplexity(loss) if loss is not None else None}
    return out


@torch.no_grad()
def pair_scores(lm, pairs: list[dict], cfg) -> dict:
    """How the model ranks held-out preference pairs: the share where the chosen answer is the likelier (summed,
    and per token, which does not favour the shorter answer), and the mean per-token log-probability margin."""
    from tunewise.templates.encode import encode_preference
    from tunewise.train.collate import PackingCost, shared_for, to_device
    from tunewise.train.preference import PreferenceCollator, sequence_logps
    from tunewise.train.trainer import causal_lm

    enc, _ = encode_preference(lm.tokenizer, lm.template, pairs, stage="dpo", max_length=cfg.data.max_length)
    if not enc:
        return {}
    # each pair's prompt (and the pairs' common beginning) computed once, where the model reads that exactly
    shared = shared_for(lm.model) if causal_lm(lm.model) is not None else None
    collate = PreferenceCollator(lm.tokenizer.pad_token_id or 0, shared=shared,
                                 cost=PackingCost.of(lm.model) if shared else None)
    wins = wins_tok = 0
    margins = []
    for i in range(0, len(enc), cfg.eval.batch_size):
        part = enc[i:i + cfg.eval.batch_size]
        batch = to_device(collate(part), lm.model.device)
        logp, n = sequence_logps(lm.model, batch)
        b = len(part)
        tok = logp / n.clamp(min=1)
        wins += int((logp[:b] > logp[b:]).sum())
        wins_tok += int((tok[:b] > tok[b:]).sum())
        margins += (tok[:b] - tok[b:]).tolist()
    return {"pair_accuracy": wins / len(enc), "pair_accuracy_per_token": wins_tok / len(enc),
            "pair_margin_per_token": sum(margins) / len(margins), "pairs": len(enc)}


def length_warning(before: dict, after: dict, share: float = 0.2) -> list[dict]:
    """Sets whose generated answers grew by more than `share` (the length drift preference training is known
    for), with both means."""
    out = []
    for name, a in after.get("sets", {}).items():
        b = before.get("sets", {}).get(name, {})
        x, y = b.get("avg_answer_tokens"), a.get("avg_answer_tokens")
        if x and y and y > (1 + share) * x:
            out.append({"set": name, "avg_answer_tokens_before": x, "avg_answer_tokens_after": y,
                        "en": f"{name}: answers grew from {x:.1f} to {y:.1f} tokens on average (+{100 * (y / x - 1):.0f}%)",
                        "zh": f"{name}：平均回答长度从 {x:.1f} 增至 {y:.1f} 个 token（+{100 * (y / x - 1):.0f}%）"})
    return out


_ROWS = ["loss", "perplexity", "rouge1", "rouge2", "rougeL", "bleu4", "exact_match", "key_term_rate", "avg_answer_tokens",
         "answer_tokens_p50", "answer_tokens_p90", "no_stop_rate", "repetition_rate", "pair_accuracy",
         "pair_accuracy_per_token", "pair_margin_per_token", *TOOL_ROWS]
_OPTIONAL_ROWS = {"pair_accuracy", "pair_accuracy_per_token", "pair_margin_per_token", *TOOL_ROWS}


def report_table(before: dict, after: dict) -> tuple[list[str], list[list[str]]]:
    header = ["metric"]
    cols = []
    for name in after["sets"]:
        header += [f"{name} before", f"{name} after"]
        cols += [before["sets"].get(name, {}), after["sets"][name]]
    rows = []
    for key in _ROWS:
        row = [key]
        for c in cols:
            v = c.get(key)
            row.append("-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        if key in _OPTIONAL_ROWS and all(x == "-" for x in row[1:]):
            continue  # preference rows of a run without pairs
        rows.append(row)
    return header, rows


def run_eval(run: str | Path, *, data: list[str] | None = None, max_samples: int | None = None,
             forgetting: bool = True, checkpoint: str | None = None, max_new_tokens: int | None = None) -> dict:
    from tunewise.evaluate.forgetting import (
        forgetting_verdict,
        general_qa_path,
        general_text_path,
    )
    from tunewise.infer.generate import load_run_model

    run = require_run(run)
    cfg = read_run_config(run)
    limit = max_samples or cfg.eval.max_samples
    sets = load_eval_sets(run, data, limit)
    if not sets:
        from tunewise.errors import RunError

        raise RunError("nothing to evaluate: the run has no validation set", where=str(run),
                       fix="pass eval data with --data FILE (jsonl/json/csv...), or train with data.val_size > 0")
    from tunewise.curves.report import result_note

    if checkpoint is None and (note := result_note(run)):
        _say(f"[tunewise] training overfit: {note}")
    gtext = [r for _, r in read_jsonl(general_text_path())] if forgetting else []
    gqa = [r for _, r in read_jsonl(general_qa_path())][:limit] if forgetting else []
    results = {}
    for label, tuned in (("before", False), ("after", True)):
        _say(f"[tunewise] evaluating the {'tuned' if tuned else 'base'} model on {', '.join(sets)}"
             + (" + forgetting probes" if forgetting else ""))
        lm = load_run_model(run, tuned=tuned, checkpoint=checkpoint if tuned else None)
        results[label] = evaluate_model(lm, sets, cfg, gtext, gqa, max_new_tokens, key_terms=run_key_terms(run))
        del lm
    eval_dir = RunDir(run).eval
    for label in ("before", "after"):
        for name, items in results[label]["predictions"].items():
            write_jsonl(eval_dir / f"predictions_{label}_{name}.jsonl", items)
    report = {label: {k: v for k, v in results[label].items() if k != "predictions"} for label in results}
    if forgetting:
        report["forgetting"] = forgetting_verdict(
            {"general_text": results["before"].get("general_text"), **results["before"]["sets"].get("general_qa", {})},
            {"general_text": results["after"].get("general_text"), **results["after"]["sets"].get("general_qa", {})},
        )
    if (grew := length_warning(results["before"], results["after"])):
        report["answers_grew"] = grew
        for g in grew:
            _say(f"[tunewise] warning: {g['en']}: check the answers still stop and are not padded out "
                 "(a known drift of preference training; `tunewise curves` says whether length explains the margin)")
    prev = RunDir(run).resolved_model.previous_run
    report["before_model"] = f"the model run {prev.name} trained (this run continued it)" if prev else "base model"
    header, rows = report_table(results["before"], results["after"])
    report["table"] = {"header": header, "rows": rows}
    write_json(eval_dir / "report.json", report)
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
    write_text(eval_dir / "report.md", md)
    report["_items"] = results  # for the blind sheet; not written
    return report
