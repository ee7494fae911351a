"""Tiny random models for trying the pipeline and for tests: real architectures, random weights.

`tiny-llama`, `tiny-qwen2` and `tiny-gemma3` are built from configs (hidden size 64, 2 layers) with a
tokenizer trained on a small bilingual corpus, deterministically, in about a second: SentencePiece-BPE
with byte fallback for llama/gemma3 (like Llama 2 and Gemma), byte-level BPE for qwen2 (like Qwen2).
`tiny-qwen2`'s tokenizer carries its own chat template (ChatML), so the "use the tokenizer's template"
path is exercised; the other two have none, like a base model, and get one from the registry.
"""

from __future__ import annotations

import io
from pathlib import Path

from tunewise.fileio import atomic_path

SPECIAL_TOKENS = [
    "<|im_start|>", "<|im_end|>",                       # chatml / qwen
    "<start_of_turn>", "<end_of_turn>",                 # gemma
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",  # llama3
    "[INST]", "[/INST]",                                # mistral
]

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

ARCHS = {
    "tiny-llama": "llama",
    "tiny-qwen2": "qwen2",
    "tiny-gemma3": "gemma3_text",
}

_CORPUS = [
    "Who are you? I am a helpful assistant. I answer briefly and then stop.",
    "你是谁？我是一个乐于助人的助手。我回答简短，然后停下。",
    "Classify the sentiment of this review as positive or negative: The coffee was wonderful. positive",
    "判断这条评论的情感（正面/负面）：这家酒店的服务很糟糕。负面",
    "The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9.",
    "Machine learning models learn patterns from data. Fine-tuning adapts a pretrained model to a task.",
    "机器学习模型从数据中学习规律。微调让预训练模型适应具体任务。",
    "The capital of France is Paris. The capital of Japan is Tokyo. 中国的首都是北京。",
    "Please answer the question. What is two plus three? The answer is five.",
    "system user assistant model instruction input output response question answer",
]


def _corpus() -> list[str]:
    from tunewise.samples.demo import demo_records

    lines = list(_CORPUS)
    for rec in demo_records():
        lines.extend(m["content"] for m in rec["messages"])
    return lines * 3


def build_tokenizer(vocab_size: int = 1000, chat_template: str | None = None):
    """Train a small SentencePiece BPE tokenizer (byte fallback, so any text encodes)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, user_defined_symbols=SPECIAL_TOKENS, character_coverage=1.0, split_digits=True,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>",
        eos_piece="</s>", hard_vocab_limit=False, minloglevel=2, num_threads=1, seed_sentencepiece_size=100000,
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "tokenizer.model").write_bytes(buf.getvalue())
        tok = LlamaTokenizer.from_pretrained(d)
    tok.pad_token = "<pad>"
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    if chat_template:
        tok.chat_template = chat_template
    return tok


def build_bytelevel_tokenizer(vocab_size: int = 1000, chat_template: str | None = None):
    """A Qwen2-style byte-level BPE tokenizer (transformers picks Qwen2Tokenizer for qwen2 models)."""
    import json

    from tokenizers import ByteLevelBPETokenizer
    from transformers import Qwen2Tokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus(), vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<|endoftext|>"] + SPECIAL_TOKENS, show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token=None, bos_token=None,
                         eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    if chat_template:
        tok.chat_template = chat_template
    return tok


def build_config(arch: str, vocab_size: int, tok):
    from transformers import AutoConfig

    common = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    if arch == "gemma3_text":
        return AutoConfig.for_model(arch, head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
                                    layer_types=["sliding_attention", "full_attention"], **common)
    if arch == "qwen2":
        return AutoConfig.for_model(arch, tie_word_embeddings=True, **common)
    return AutoConfig.for_model(arch, tie_word_embeddings=False, **common)


def build_tiny(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build the tiny model `name` into `out_dir` (safetensors + tokenizer). Deterministic under seed."""
    import torch
    from transformers import AutoModelForCausalLM

    arch = ARCHS[name]
    tok = build_bytelevel_tokenizer(chat_template=CHATML_TEMPLATE) if arch == "qwen2" else build_tokenizer()
    cfg = build_config(arch, len(tok), tok)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "tunewise_tiny.txt").write_text(f"{name} seed={seed}\n")
    return out_dir
