"""Preference training (train.stage dpo | orpo | simpo | kto) on the same engine as SFT.

Same run directory, template, trainer, checkpoints, metrics.jsonl and verdict machinery as SFT; what differs is
the batch (a chosen and a rejected answer per prompt, or single answers labelled desirable or not), the loss, and
the reference model:

- the reference is never a second copy of the model. A fresh adapter's reference is the policy with the adapter
  switched off (peft's `disable_adapter`); full/freeze and an adapter continued from an earlier run (whose
  reference is that run's model, not the base) get the reference log-probabilities computed once, before
  training, from the model as it starts (`preference.precompute_reference` asks for that in every case);
- an answer's log-probability is the sum over its supervised tokens (its content and its end-of-turn token), from
  hidden states at those positions only, a chunk of rows at a time, so the vocabulary-wide logits of the whole
  batch never exist at once;
- the losses (`preference_loss`) follow the papers: DPO (Rafailov et al., 2023) with its sigmoid, IPO (Azar et
  al., 2023) and hinge (SLiC, Zhao et al., 2023) forms and conservative label smoothing; SimPO (Meng et al., 2024:
  length-normalised, no reference, target margin gamma); ORPO (Hong et al., 2024: SFT loss plus beta x the log
  odds-ratio term); KTO (Ethayarajh et al., 2024) with its reference point the KL between policy and reference
  estimated, as the paper and TRL do, on mismatched rows (each prompt with the next example's answer, fixed when
  encoding), without gradient and clipped at 0.

Logged per step and per evaluation: rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies,
logps/chosen, logps/rejected, length/chosen, length/rejected (KTO: the desirable and undesirable sides).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch.utils.data import Dataset

from tunewise.templates.encode import IGNORE
from tunewise.train.collate import PadCollator, to_device
from tunewise.train.trainer import TunewiseTrainer, causal_lm, head_cross_entropy

REFERENCE_STAGES = ("dpo", "kto")  # simpo and orpo need no reference model


class PreferenceDataset(Dataset):
    """Encoded pairs ({index, chosen, rejected}) or KTO examples ({index, answer, label})."""

    def __init__(self, examples: list[dict], stats: dict | None = None):
        self.examples = examples
        self.stats = stats  # the encoding's token counts (templates/encode stats as a dict), where known

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]

    @property
    def lengths(self) -> list[int]:  # for group_by_length and the step plan
        return [max(len(e[k].input_ids) for k in ("chosen", "rejected", "answer") if k in e) for e in self.examples]


class PreferenceCollator:
    """One padded batch: for pairs, the chosen rows first, then the rejected rows in the same order.

    shared (train/collate.SharedPrefix, for a model that reads such rows exactly): pairs go into one row instead,
    where that costs less than padding them (`cost`): the beginning every answer's prompt has in common (a system
    prompt) once, then per pair its prompt once, followed by its chosen and its rejected answer, each attending to
    its prompt and the common beginning at the positions it has alone. `row_of` says which row (chosen i, rejected
    i) each token's log-probability belongs to."""

    def __init__(self, pad_id: int, shared=None, cost=None):
        self.pad = PadCollator(pad_id)
        self.shared, self.cost = shared, cost

    def __call__(self, features: list[dict]) -> dict:
        extra = {}
        if "answer" in features[0]:
            rows = [f["answer"] for f in features]
            extra["kto_label"] = torch.tensor([f["label"] for f in features], dtype=torch.bool)
            if all("kl" in f for f in features):  # the mismatched rows of KTO's KL estimate, a batch of their own
                kl = self._pad([f["kl"] for f in features])
                extra.update({"kl_" + k: v for k, v in kl.items()})
        else:
            rows = [f["chosen"] for f in features] + [f["rejected"] for f in features]
            if self.shared is not None and (row := self._shared_row(features)) is not None:
                return {**row, "pref_index": torch.tensor([f["index"] for f in features], dtype=torch.long)}
        return {**self._pad(rows), "pref_index": torch.tensor([f["index"] for f in features], dtype=torch.long), **extra}

    def _shared_row(self, features: list[dict]) -> dict | None:
        from tunewise.train.collate import SHARED_PREFIX_MIN, common_unsupervised_prefix

        def feat(e):
            return {"input_ids": list(e.input_ids), "labels": list(e.labels)}

        b = len(features)
        pairs = [(feat(f["chosen"]), feat(f["rejected"])) for f in features]
        every = [x for p in pairs for x in p]
        common = common_unsupervised_prefix(every)
        common = common if common >= SHARED_PREFIX_MIN else 0
        ids, labels, pos, seg, row_of = list(every[0]["input_ids"][:common]), [IGNORE] * common, list(range(common)), \
            [0] * common, [-1] * common
        parent = [-1]
        for i, (c, r) in enumerate(pairs):
            own = common_unsupervised_prefix([c, r])  # >= common: the pair's prompt, unscored
            top = 0
            if own > common:
                parent.append(0)
                top = len(parent) - 1
                ids += c["input_ids"][common:own]
                labels += [IGNORE] * (own - common)
                pos += list(range(common, own))
                seg += [top] * (own - common)
                row_of += [-1] * (own - common)
            for k, side in ((i, c), (b + i, r)):
                parent.append(top)
                rest = side["input_ids"][own:]
                lab = side["labels"][own:]
                lab[0] = IGNORE  # unscored by the choice of `own`; in the row it follows another segment
                ids += rest
                labels += lab
                pos += list(range(own, own + len(rest)))
                seg += [len(parent) - 1] * len(rest)
                row_of += [k] * len(rest)
        held = sum(len(x["input_ids"]) for x in every)
        if self.cost is not None and self.cost.packed([len(ids)]) >= self.cost.padded([len(x["input_ids"]) for x in every]):
            return None
        return {"input_ids": torch.tensor([ids], dtype=torch.long), "labels": torch.tensor([labels], dtype=torch.long),
                "position_ids": torch.tensor([pos], dtype=torch.long),
                "attention_mask": self.shared.mask(torch.tensor(seg), torch.tensor(pos), parent),
                "row_of": torch.tensor([row_of], dtype=torch.long), "row_count": torch.tensor([2 * b], dtype=torch.long),
                "example_tokens": torch.tensor([held], dtype=torch.long), "use_cache": False}

    def _pad(self, rows) -> dict:
        return self.pad([{"input_ids": e.input_ids, "labels": e.labels} for e in rows])


def _row_count(inputs: dict) -> int:
    """The rows a batch scores: padded rows, or those a shared row holds."""
    return int(inputs["row_count"].sum()) if "row_count" in inputs else inputs["input_ids"].shape[0]


def _kl_rows(inputs: dict) -> dict | None:
    if "kl_input_ids" not in inputs:
        return None
    return {k: inputs["kl_" + k] for k in ("input_ids", "labels", "attention_mask")}


def sequence_logps(model, inputs: dict, chunk_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log-probabilities of each row's supervised tokens, their count), one value per row."""
    labels = inputs["labels"]
    y = labels[:, 1:]
    mask = y != IGNORE
    extra = {"position_ids": inputs["position_ids"]} if "position_ids" in inputs else {}
    if "row_of" in inputs:  # a shared row (PreferenceCollator._shared_row): each token's row
        n_rows = int(inputs["row_count"].sum())
        rows = inputs["row_of"][:, 1:][mask]
        counts = torch.bincount(rows, minlength=n_rows)
    else:
        n_rows = y.shape[0]
        rows = torch.arange(y.shape[0], device=y.device)[:, None].expand_as(y)[mask]
        counts = mask.sum(1)
    lm = causal_lm(model)
    if lm is None:  # prompt/prefix tuning, DDP: the wrapper's forward (full logits)
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **extra).logits[:, :-1].float()
        if logits.shape[1] != y.shape[1]:  # prompt tuning puts its virtual tokens first
            logits = logits[:, -y.shape[1]:]
        tok = torch.gather(logits.log_softmax(-1), 2, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.zeros(n_rows, dtype=torch.float32, device=y.device).index_add(0, rows, tok[mask]), counts
    hidden = lm.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                              use_cache=False, **extra).last_hidden_state
    h, yy = hidden[:, :-1][mask], y[mask]
    head = lm.get_output_embeddings()
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    parts = []
    for i in range(0, h.shape[0], chunk_size):
        args = (h[i:i + chunk_size], yy[i:i + chunk_size], head, softcap, "none")
        # each chunk's logits are recomputed in backward instead of kept: chunk x vocab floats at a time
        parts.append(checkpoint(head_cross_entropy, *args, use_reentrant=False) if torch.is_grad_enabled()
                     else head_cross_entropy(*args))
    per_tok = -torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)
    sums = torch.zeros(n_rows, dtype=torch.float32, device=y.device).index_add(0, rows, per_tok)
    return sums, counts


def preference_loss(stage: str, pref, logp: torch.Tensor, ntok: torch.Tensor, ref: torch.Tensor | None = None,
                    kto_label: torch.Tensor | None = None, kl_ratio: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The stage's loss (mean over the batch) and its metrics, from per-row log-probabilities.

    Pairs: rows [chosen..., rejected...]; KTO: one row per example with kto_label. `ref`: the reference's
    log-probabilities of the same rows (dpo, kto). `kl_ratio` (kto): policy minus reference log-probability of
    mismatched prompt/answer rows, KTO's estimate of the KL; without it, the batch's own mean log-ratio."""
    beta = pref.resolved_beta(stage)
    n = ntok.clamp(min=1).float()
    if stage == "kto":
        ratio = logp - ref
        kl = kl_ratio if kl_ratio is not None and kl_ratio.numel() else ratio
        z = kl.detach().mean().clamp(min=0)  # the reference point (no gradient through it, as in the paper)
        good = kto_label
        lam = torch.where(good, torch.full_like(ratio, pref.desirable_weight), torch.full_like(ratio, pref.undesirable_weight))
        losses = lam * (1 - torch.sigmoid(torch.where(good, beta * (ratio - z), beta * (z - ratio))))
        rewards = (beta * ratio).detach()
        m = {"kl": float(z)}
        for side, sel in (("chosen", good), ("rejected", ~good)):
            if bool(sel.any()):
                m[f"rewards/{side}"] = float(rewards[sel].mean())
                m[f"logps/{side}"] = float(logp.detach()[sel].mean())
                m[f"length/{side}"] = float(ntok[sel].float().mean())
        return losses.mean(), m
    b = logp.shape[0] // 2
    pc, pr, nc, nr = logp[:b], logp[b:], n[:b], n[b:]
    if stage == "dpo":
        rc, rr = pc - ref[:b], pr - ref[b:]
        d = rc - rr
        if pref.loss_type == "ipo":
            # IPO regresses the log-ratio margin (per token, as in the paper's implementation) onto 1/(2 beta)
            d_tok = rc / nc - rr / nr
            losses = (d_tok - 1 / (2 * beta)) ** 2
        elif pref.loss_type == "hinge":
            losses = torch.relu(1 - beta * d)
        else:
            ls = pref.label_smoothing
            losses = -F.logsigmoid(beta * d) * (1 - ls) - F.logsigmoid(-beta * d) * ls
        reward_c, reward_r = beta * rc, beta * rr
    elif stage == "simpo":
        ac, ar = pc / nc, pr / nr
        losses = -F.logsigmoid(beta * (ac - ar) - pref.gamma)
        reward_c, reward_r = beta * ac, beta * ar
    elif stage == "orpo":
        ac, ar = pc / nc, pr / nr
        # log odds(y) = log p - log(1 - p), with p the per-token mean probability of the answer
        log_odds = (ac - ar) - (torch.log1p(-torch.exp(ac).clamp(max=1 - 1e-6)) - torch.log1p(-torch.exp(ar).clamp(max=1 - 1e-6)))
        losses = -ac - beta * F.logsigmoid(log_odds)
        reward_c, reward_r = beta * ac, beta * ar
    else:
        raise ValueError(f"not a preference stage: {stage}")
    if stage in ("dpo", "simpo") and pref.sft_weight > 0:
        losses = losses + pref.sft_weight * (-pc / nc)
    reward_c, reward_r = reward_c.detach(), reward_r.detach()
    m = {"rewards/chosen": float(reward_c.mean()), "rewards/rejected": float(reward_r.mean()),
         "rewards/margins": float((reward_c - reward_r).mean()),
         "rewards/accuracies": float((reward_c > reward_r).float().mean()),
         "logps/chosen": float(pc.detach().mean()), "logps/rejected": float(pr.detach().mean()),
         "length/chosen": float(nc.mean()), "length/rejected": float(nr.mean())}
    return losses.mean(), m


def check_preference_config(cfg) -> None:
    """Settings that cannot go with a preference stage, refused before any work."""
    from tunewise.errors import ConfigError

    t = cfg.train
    # train.packing 'auto' is off for preference stages (config.plan.packs); only an explicit true is refused
    for key, on in (("train.packing", t.packing is True), ("train.group_by_length", t.group_by_length)):
        if on:
            raise ConfigError(f"{key} does not go with train.stage {t.stage}: a chosen and a rejected answer are "
                              "scored row by row, side by side", where=key, fix=f"remove {key} (or set it to false)")


def reference_mode(cfg, *, peft_result: bool, continued: bool) -> str | None:
    """How this run gets its reference log-probabilities: None (simpo, orpo), 'adapter_off' or 'precomputed'."""
    if cfg.train.stage not in REFERENCE_STAGES:
        return None
    if cfg.preference.precompute_reference or not peft_result or continued:
        return "precomputed"
    return "adapter_off"


class PreferenceTrainer(TunewiseTrainer):
    """TunewiseTrainer with a preference loss; everything else (checkpoints, metrics, evaluation) is SFT's."""

    def __init__(self, *args, stage: str, pref, reference: str | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage, self.pref, self.reference = stage, pref, reference
        self.loss_is_scaled_for_ga = False  # a mean over the micro-batch: Trainer divides by the accumulation
        self.ref_table: torch.Tensor | None = None
        self._stored: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    # ---- reference --------------------------------------------------------------------------------------
    @torch.no_grad()
    def precompute_reference(self, datasets) -> None:
        """The reference log-probabilities of every example, from the model as training starts (eval mode)."""
        rows = sum(len(d) for d in datasets if d is not None) * 2  # pairs: chosen, rejected; kto: answer, kl row
        table = torch.full((rows,), math.nan)
        was_training = self.model.training
        self.model.eval()
        try:
            for ds in datasets:
                if ds is None or not len(ds):
                    continue
                for i in range(0, len(ds), self.args.per_device_eval_batch_size):
                    batch = self.data_collator([ds[j] for j in range(i, min(len(ds), i + self.args.per_device_eval_batch_size))])
                    batch = to_device(batch, self.args.device)
                    logp, _ = sequence_logps(self.model, batch, self.loss_chunk_size)
                    if (kl := _kl_rows(batch)) is not None:  # kto: the answers' slots, then the KL rows' slots
                        logp = torch.cat([logp, sequence_logps(self.model, kl, self.loss_chunk_size)[0]])
                    self._put(table, batch["pref_index"], logp.float().cpu())
        finally:
            self.model.train(was_training)
        self.ref_table = table

    def _slots(self, index: torch.Tensor, n: int) -> torch.Tensor:
        """Table slots of a batch's rows: chosen (kto: answer) rows, then rejected (kto: KL) rows, as the collator
        lays them out; n: how many rows there are (a kto batch without KL rows has only the first half)."""
        index = index.cpu()
        return torch.cat([2 * index, 2 * index + 1])[:n]

    def _put(self, table, index, values) -> None:
        table[self._slots(index, len(values))] = values

    def _reference_logps(self, model, inputs) -> torch.Tensor | None:
        """The reference's log-probabilities of the batch's rows (kto: followed by its KL rows')."""
        if self.reference is None:
            return None
        kl = _kl_rows(inputs)
        n = _row_count(inputs) + (0 if kl is None else kl["input_ids"].shape[0])
        if self.reference == "precomputed":
            if self.ref_table is None:
                raise RuntimeError("precompute_reference() was not called before training")
            return self.ref_table[self._slots(inputs["pref_index"], n)].to(inputs["input_ids"].device)
        # under DDP the wrapper has no adapter switch; a no-grad forward needs no gradient sync, so the model itself
        base = self.accelerator.unwrap_model(model)
        with torch.no_grad(), base.disable_adapter():
            ref = sequence_logps(base, inputs, self.loss_chunk_size)[0]
            if kl is not None:
                ref = torch.cat([ref, sequence_logps(base, kl, self.loss_chunk_size)[0]])
            return ref

    # ---- loss and metrics -------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        held = inputs.pop("example_tokens", None)  # a shared row: the tokens its rows hold
        if model.training:
            self.tokens_seen += int(held.sum()) if held is not None else int(inputs["attention_mask"].sum())
        logp, ntok = sequence_logps(model, inputs, self.loss_chunk_size)
        ref = self._reference_logps(model, inputs)
        kl_ratio = None
        if (kl := _kl_rows(inputs)) is not None:
            with torch.no_grad():  # the KL estimate is a reference point: no gradient flows through it
                kl_ratio = sequence_logps(model, kl, self.loss_chunk_size)[0] - ref[logp.shape[0]:]
            ref = ref[:logp.shape[0]]
        loss, metrics = preference_loss(self.stage, self.pref, logp, ntok, ref, inputs.get("kto_label"), kl_ratio)
        store = self._stored["train" if model.training else "eval"]
        rows = int(logp.shape[0] // (1 if self.stage == "kto" else 2))  # pairs (or KTO examples) in this micro-batch
        for k, v in metrics.items():
            store[k].append((v * rows, rows))
        loss = self.with_penalty(model, loss, scaled=False)  # a micro-batch mean: Trainer divides it all by accumulation
        return (loss, {"loss": loss}) if return_outputs else loss

    def _means_across_ranks(self, stored: dict[str, list[tuple[float, int]]]) -> dict[str, float]:
        """Each metric's mean over every micro-batch of every process since the last log. Trainer calls log() on
        all ranks together, so under DDP/FSDP the sums and counts are all-reduced: the logged rewards and accuracy
        then describe the whole global batch, as the logged loss does, not rank 0's share of it. (An evaluation
        set that does not divide into the global batch is evened out by accelerate with a few repeated examples;
        those count here, while the loss drops them.)"""
        keys = sorted(k for k, v in stored.items() if v)
        if not keys:
            return {}
        # (sum, count) per metric: a short last micro-batch weighs by its rows, not as much as a full one
        t = torch.tensor([[sum(x for x, _ in stored[k]), sum(n for _, n in stored[k])] for k in keys],
                         dtype=torch.float64, device=self.args.device)
        if self.args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(t)
        return {k: round(float(s / n), 6) for k, (s, n) in zip(keys, t.tolist())}

    def log(self, logs: dict, *args, **kwargs) -> None:
        side = "eval" if "eval_loss" in logs else "train" if "loss" in logs else None
        if side is not None:
            prefix = "eval_" if side == "eval" else ""
            for k, v in self._means_across_ranks(self._stored[side]).items():
                logs[prefix + k] = v
            self._stored[side].clear()
        super().log(logs, *args, **kwargs)
