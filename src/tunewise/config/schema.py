"""The config schema: one pydantic model per section, every field with a default and a description.

The descriptions are the single source for `--help`, `tunewise explain` and the config reference.
Models are frozen after loading, and unknown keys are errors (see `tunewise.config.load`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator




class CleanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    normalize_unicode: bool = Field(True, description="NFKC-normalise text (full-width letters, ligatures; CJK punctuation is kept), drop invisible characters, tidy whitespace.")
    strip_markup: bool = Field(True, description="Remove leftover HTML tags and decode entities (&amp; -> &).")
    ai_phrases: bool = Field(True, description="Drop records whose answer contains boilerplate AI phrases (bilingual "
                             "list: 'As an AI language model', '作为一个AI语言模型', 'trained by OpenAI', '有害或攻击性内容', ...), "
                             "matched whatever the case, spacing, punctuation or full-width forms.")
    extra_ai_phrases: list[str] = Field(default_factory=list, description="More phrases to filter, besides the built-in list "
                                        "(matched the same forgiving way).")
    ai_phrases_file: str | None = Field(None, description="A file with more phrases, one per line ('#' starts a comment).")
    min_chars: int = Field(1, ge=0, description="Drop records whose answer (or text) is shorter than this many characters.")
    max_chars: int = Field(200_000, ge=1, description="Drop records longer than this many characters in total.")
    dedup_exact: bool = Field(True, description="Drop exact duplicate records (after normalisation), keeping the first.")
    dedup_near: bool = Field(True, description="Drop near-duplicate records (MinHash over character shingles), keeping the first.")
    near_threshold: float = Field(0.85, gt=0, le=1, description="Estimated Jaccard similarity above which two records are near duplicates.")
    shingle_size: int = Field(5, ge=1, description="Characters per shingle for near-duplicate detection.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations (more = more precise, slower).")
    leakage_check: bool = Field(True, description="Drop validation items that near-duplicate a training item.")

class Section(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` for a learning rate, ratio or penalty is refused at load, never trained on.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)


# --------------------------------------------------------------------------------------------
class RunConfig(Section):
    name: str | None = Field(None, description="Run name; the run directory is <root>/<name>. Default: the config file's name. "
                             "One folder name: no '/', '\\', '..', leading '.' or control characters.")
    root: str = Field("runs", description="Folder that holds run directories.")

    @field_validator("name")
    @classmethod
    def _one_safe_folder_name(cls, v: str | None) -> str | None:
        if v is not None and (why := unsafe_run_name(v)):
            raise ValueError(f"a run name must be one plain folder name: {why}")
        return v


def unsafe_run_name(name: str) -> str | None:
    """Why `name` cannot be a run folder name under run.root (None: it can)."""
    if not name or not name.strip():
        return "it is empty"
    if name != name.strip():
        return "it starts or ends with a space"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if name.startswith("."):
        return "it starts with '.' ('.', '..' and hidden folders are not run names)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains a control character"
    if len(name.encode("utf-8")) > 200:
        return "it is longer than 200 bytes"
    return None


class ModelConfig(Section):
    name_or_path: str = Field(
        "gemma3-270m",
        description="Model to fine-tune: 'gemma3-270m' (the offline default, a base model), 'smollm2-135m-instruct' (an offline instruct model), 'tiny-llama'/'tiny-qwen2'/'tiny-gemma3' "
        "(tiny random models for trying the pipeline), a Hugging Face Hub id ORG/NAME (downloaded once into the Hugging Face cache), "
        "a local model folder, a .gguf file, or a previous run directory.",
    )
    revision: str | None = Field(
        None, description="For a Hugging Face Hub id (ORG/NAME): the branch, tag or commit to use (default: main). A Hub id is "
        "downloaded once into the Hugging Face cache (safetensors, config and tokenizer only) and loaded from there afterwards.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype when loading. 'auto': float32 on CPU, bfloat16 on GPUs that support it."
    )
    trust_remote_code: bool = Field(False, description="Run Python code shipped with a model. Off for safety; turn on only for models you trust.")
    attn_implementation: Literal["sdpa", "eager"] = Field("sdpa", description="Attention kernel: 'sdpa' (fast, default) or 'eager' (reference).")
    attention_dropout: float | None = Field(None, ge=0, lt=1, description="Override the model's attention dropout (where the architecture has one); regularises full fine-tuning.")
    hidden_dropout: float | None = Field(None, ge=0, lt=1, description="Override the model's hidden/residual dropout, where "
        "the architecture has one (GPT-2, GPT-NeoX, BERT-style configs). Llama-style models (Llama, Qwen2, Mistral, Gemma) "
        "have none: there it is ignored with a warning at load; use method.lora_dropout or train.weight_decay instead.")


class DatasetSpec(Section):
    path: str | None = Field(None, description="File with the data (json, jsonl, csv, tsv, xlsx, html, sql, sqlite, parquet, txt). Relative to the config file.")
    name: str | None = Field(None, description="Dataset name: a key of data.dataset_info (LLaMA-Factory style), or a label for reports.")
    format: Literal["auto", "alpaca", "sharegpt", "messages", "text"] = Field(
        "auto", description="Record format; 'auto' detects it from the first record's fields."
    )
    reader: str | None = Field(None, description="Reader to use instead of the one chosen by file extension.")
    columns: dict[str, str] = Field(default_factory=dict, description="Map of record fields to source columns, e.g. {prompt: question, response: answer}; tools: the column with the functions a record may call (default 'tools' for sharegpt and messages data).")
    tags: dict[str, str] = Field(default_factory=dict, description="ShareGPT role tags, e.g. {role_tag: from, content_tag: value, user_tag: human, assistant_tag: gpt}; for tool calling also function_tag (default function_call) and observation_tag (default observation).")
    options: dict[str, Any] = Field(default_factory=dict, description="Reader options (encoding, sep, selectors, query, ...).")
    weight: float = Field(1.0, gt=0, description="Mixing weight relative to the other datasets (1.0 = use as is; 2.0 = twice as often).")
    system: str | None = Field(None, description="System prompt added to this dataset's records that have none (e.g. a task tag).")


class AugmentConfig(Section):
    enabled: bool = Field(False, description="Add augmented copies of training records (small datasets only; off by default).")
    methods: list[Literal["delete", "swap", "synonym"]] = Field(
        default_factory=lambda: ["delete", "swap", "synonym"], description="Edits to apply: random word deletion, word swap, synonym replacement."
    )
    prob: float = Field(0.1, gt=0, lt=1, description="Share of words touched by each edit.")
    copies: int = Field(1, ge=1, le=10, description="Augmented copies made of each training record.")
    apply_to: Literal["prompt", "all"] = Field("prompt", description="Edit only user prompts (default: answers stay exact) or every turn.")
    synonyms_file: str | None = Field(None, description="Extra synonym groups, one group per line, comma-separated (zh or en).")


class DataConfig(Section):
    datasets: list[DatasetSpec] = Field(default_factory=list, description="Training datasets (paths or dataset_info names).")
    val_datasets: list[DatasetSpec] = Field(default_factory=list, description="Separate validation datasets; when set, val_size is ignored.")
    dataset_info: str | None = Field(None, description="Path to a LLaMA-Factory dataset_info.json; datasets may then be named as there.")
    val_size: float = Field(0.1, ge=0, description="Validation share (0-1) or count (>= 1) held out from training data.")
    max_length: int = Field(1024, ge=8, description="Longest example in tokens; longer ones are truncated (reported).")
    train_on_prompt: bool = Field(False, description="Also compute loss on prompt tokens. Off: loss on assistant answers only.")
    strict: bool = Field(True, description="Stop on malformed rows/records. Off: skip them and list them in data/dropped.jsonl.")
    shuffle: bool = Field(True, description="Shuffle records before splitting (deterministic under train.seed).")
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning steps: normalisation, markup, AI boilerplate, length, duplicates, leakage.")
    replay_ratio: float = Field(
        0.2, ge=0, description="When continuing a previous run (model.name_or_path: runs/<old>), mix back this share "
        "(relative to the new training set) of the old run's training data, against catastrophic forgetting."
    )
    general: list[DatasetSpec] = Field(default_factory=list, description="General-purpose datasets mixed in to keep general "
        "ability (the guides' first remedy against forgetting). 'builtin' is a bilingual general instruction set that "
        "ships with tunewise (320 records: arithmetic, conversions, sorting, translation, sentiment, code, definitions, "
        "tips); or give your own files.")
    general_ratio: float = Field(0.1, ge=0, description="Size of the general-data mix relative to the training set (0.1 = 10%).")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Text augmentation for small datasets.")
    num_workers: int = Field(0, ge=0, description="Processes that clean records and count their tokens while preparing "
                             "data: 0 = one per CPU core, 1 = this process only. The results are the same for any number; "
                             "more only make large data faster.")
    token_stats_sample: int = Field(200_000, ge=0, description="Token statistics of `data prepare` (stats.json `tokens`, "
                                    "the length histogram): 0 = count every record; N = above N records (train and val), "
                                    "count N picked at random (seeded; the splits share them in proportion) and scale to all, "
                                    "marked `sampled`. The default counts every record of any set up to 200,000 records and "
                                    "samples larger ones, where counting every token took longer than cleaning (1 GB CSV, "
                                    "3.8 M records: the whole prepare in 229 s instead of ~10 minutes). They only report: "
                                    "training counts every record itself.")

    @field_validator("val_size")
    @classmethod
    def _count_is_whole(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError("a val_size of 1 or more is a count of records and must be a whole number (a share is below 1)")
        return v

    @field_validator("datasets", "val_datasets", "general", mode="before")
    @classmethod
    def _strings_are_specs(cls, v):
        # `datasets: [a.jsonl, alpaca_zh]` is shorthand for path/name entries.
        if isinstance(v, (str, dict)):
            v = [v]
        out = []
        for item in v or []:
            if isinstance(item, str):
                looks_like_file = "/" in item or "." in item.rsplit("/", 1)[-1]
                out.append({"path": item} if looks_like_file else {"name": item})
            else:
                out.append(item)
        return out


class TemplateConfig(Section):
    name: str = Field(
        "auto",
        description="Chat template: 'auto' (the tokenizer's own, else the one for the model family), 'tokenizer', "
        "or a registry name: chatml, qwen, llama3, gemma, mistral, plain.",
    )
    system: str | None = Field(None, description="Default system prompt for records without one.")
    tools: Literal["auto", "native", "hermes"] = Field(
        "auto", description="How records with tools are rendered: 'native' (the tokenizer's own template renders "
        "tools, as apply_chat_template(..., tools=...) does), 'hermes' (tools in the system prompt, calls as "
        "<tool_call>{json}</tool_call>, results as <tool_response> turns: works with every template and exports to "
        "Ollama with tools), 'auto' (native when the template renders tools, else hermes).")


class MethodConfig(Section):
    name: str = Field("lora", description="Tuning method: lora, qlora, full, freeze, prefix, prompt, adapter (see `tunewise methods`).")
    lora_r: int = Field(16, ge=1, description="LoRA rank: size of the low-rank update. Higher = more capacity and memory.")
    lora_alpha: float = Field(32, gt=0, description="LoRA scaling numerator; the update is scaled by alpha/r (alpha = 2r is the usual start).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input; regularises small datasets.")
    target_modules: list[str] | str = Field("all-linear", description="Modules that get LoRA: 'all-linear' or names such as [q_proj, v_proj].")
    modules_to_save: list[str] = Field(default_factory=list, description="Modules trained in full besides LoRA, e.g. [embed_tokens, lm_head].")
    use_dora: bool = Field(False, description="DoRA: decompose weights into magnitude and direction (a bit better, slower).")
    train_stop_tokens: bool = Field(True, description="lora/qlora: also train the embedding rows (and the tied output "
        "rows) of the chat template's control tokens: the end-of-turn token and the turn start. A base model has barely "
        "seen them, so without this it may never learn to end its answers (measured on Gemma 3 270M: see the README). "
        "A few thousand parameters; merged into the weights on export.")
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(r) so high ranks train stably.")
    quant_bits: Literal[4, 8] = Field(4, description="qlora: quantise the frozen base to 4-bit NF4 (double quantised) or 8-bit.")
    freeze_trainable_layers: int = Field(2, ge=1, description="freeze: number of top transformer layers to train.")
    freeze_extra_modules: list[str] = Field(default_factory=list, description="freeze: extra module names to train (e.g. [norm, lm_head]).")
    num_virtual_tokens: int = Field(20, ge=1, description="prefix/prompt: number of virtual tokens learned.")
    prefix_projection: bool = Field(False, description="prefix: learn the prefix through a small MLP (reparameterisation; steadier training, more parameters while training; the saved result holds only the projected prefix).")
    prompt_init_text: str | None = Field(None, description="prompt: start the virtual tokens from this text's embeddings, e.g. 'Classify the sentiment:' (None = random).")
    adapter_size: int = Field(64, ge=1, description="adapter: bottleneck width of each adapter.")
    adapter_placement: Literal["pfeiffer", "houlsby"] = Field(
        "pfeiffer", description="adapter: 'pfeiffer' = one adapter after each feed-forward block; 'houlsby' = also one after each attention block."
    )


class TrainConfig(Section):
    stage: Literal["sft", "pretrain", "dpo", "orpo", "simpo", "kto"] = Field("sft", description="sft: supervised chat "
        "fine-tuning; pretrain: continued pretraining on raw text; dpo, orpo, simpo: preference training on "
        "chosen/rejected answer pairs (usually after an SFT run); kto: preference training on single answers marked "
        "desirable or not. See the preference section.")
    learning_rate: float | None = Field(None, gt=0, description="Peak learning rate. Default by method: 2e-4 for LoRA-like methods, 1e-5 for full/freeze.")
    num_epochs: float | None = Field(None, gt=0, description="Passes over the training data. Default: 3, or more "
        "for a small dataset so that it gets at least train.min_steps optimizer steps (at most 10 passes; early stopping "
        "ends sooner when the validation loss and the generation check stop improving). A hundred examples at batch 8 give "
        "13 steps a pass: 3 passes teach them neither their content nor to stop (measured, see the README).")
    min_steps: int = Field(60, ge=1, description="With num_epochs unset: run enough passes for at least this many "
        "optimizer steps (up to 10 passes); with gradient_accumulation_steps unset, data too small for this many steps "
        "in 3 passes also gets one forward pass per step.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides num_epochs).")
    per_device_batch_size: int = Field(4, ge=1, description="Examples per forward pass on each device.")
    gradient_accumulation_steps: int | None = Field(None, ge=1, description="Forward passes per optimizer step; effective "
        "batch = batch size x this x devices. Default: 2, or 1 for data too small to give train.min_steps optimizer "
        "steps in 3 passes at 2 (small data needs more updates, not larger ones: 81 identity examples learn to stop and "
        "their new name in 63 steps at batch 4, measured, see docs/stopping.md).")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "inverse_sqrt", "cosine_with_restarts", "polynomial"] = Field(
        "cosine", description="How the learning rate changes after warmup."
    )
    scheduler_cycles: int = Field(1, ge=1, description="cosine_with_restarts: number of cycles.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming up the learning rate. warmup_steps wins when both are set.")
    warmup_steps: int = Field(0, ge=0, description="Warmup steps; when > 0 it wins over warmup_ratio.")
    optimizer: Literal["adamw", "sgd", "adafactor", "adamw_8bit", "paged_adamw_8bit"] = Field(
        "adamw", description="The optimiser: 'adamw' (Adam with decoupled weight decay; the default that fine-tuning "
        "recipes use), 'sgd' (with train.momentum; least memory after adafactor, needs a ~10-100x higher learning rate), "
        "'adafactor' (factored second moments: almost no optimiser memory, for large full fine-tuning), 'adamw_8bit' "
        "(AdamW with 8-bit states from bitsandbytes: a quarter of AdamW's optimiser memory, CPU or GPU), "
        "'paged_adamw_8bit' (the same, paging its states to CPU RAM when the GPU runs short; GPU only).")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum (share of the previous update carried into the next).")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay: each optimizer step shrinks every "
        "trainable weight by learning_rate x weight_decay, apart from the gradient (AdamW, Adafactor, 8-bit AdamW; with sgd "
        "it joins the gradient, which for plain SGD is the same). It is not an L2 term in the loss: under Adam such a "
        "term is divided by each weight's gradient scale, so a guide's 'L2 1e-4' is train.l2, not this. 0.01-0.1 regularises.")
    max_grad_norm: float = Field(1.0, ge=0, description="Clip gradients to this norm; guards against spikes (0 = off).")
    seed: int = Field(42, description="Seed for data shuffling, splitting and initialisation.")
    logging_steps: int = Field(5, ge=1, description="Write train loss to metrics.jsonl every N steps.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate on the validation set every N steps. Default: about 10 times per run.")
    save_steps: int | None = Field(None, ge=1, description="Save a checkpoint every N steps. Default: at every evaluation. "
        "With a validation set checkpoints must fall on evaluations (the best one is kept), so N is rounded up to a "
        "multiple of the evaluation interval, with a warning.")
    save_total_limit: int = Field(3, ge=1, description="Keep at most this many checkpoints (the best is always kept).")
    early_stopping: bool = Field(True, description="Stop when validation loss stops improving (needs a validation set).")
    early_stopping_patience: int = Field(3, ge=1, description="Evaluations without improvement before stopping.")
    early_stopping_threshold: float = Field(0.0, ge=0, description="Minimum decrease of validation loss that counts as improvement.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Training precision. 'auto': bf16 on GPUs that support it; on a "
        "CPU, bf16 where a matmul of the model's shape is measured at start to run at least twice as fast in bf16 (CPUs with bf16 "
        "matrix units, e.g. Intel AMX), else fp32; the start-of-run line says which and why. bf16 is mixed precision: trainable "
        "weights, gradients, optimizer states and the loss's softmax stay fp32.")
    gradient_checkpointing: Literal["auto"] | bool = Field("auto", description="Recompute activations in backward: less "
        "memory, more time (each layer's forward runs twice: 1.15-1.3x the time measured at Qwen2.5-1.5B LoRA on a CPU). 'auto': on when the run without it is estimated (the same estimate as `tunewise "
        "advise`, from the model, method, batch and the longest example) to need more than half of the memory one "
        "process may use here (free RAM, or the GPU's memory); off otherwise, and never for prefix tuning. The "
        "start-of-run line says which and why. On a CPU it also hands tensors of 1 MiB and more back to the system the moment they are freed (glibc otherwise "
        "keeps freed activations in its heap: Qwen2.5-1.5B LoRA peaked at 8.6 GB instead of 4.1 GB).")
    packing: Literal["auto"] | bool = Field("auto", description="Put each batch's examples side by side in one row "
        "without padding (attention never crosses examples; the same optimizer steps and loss). 'auto': on for SFT and "
        "continued pretraining when the model is checked to attend within examples only and the method can take "
        "packed rows (not prefix/prompt tuning, not preference stages, not with train.group_by_length), and then "
        "batch by batch: a batch is packed only where that costs less than padding it (a packed row's attention grows "
        "with the square of the whole row, so long examples of like length cost more packed); true packs every batch. "
        "Measured 1.32x as fast as padded batches of 4 on instruction data of realistic lengths, with 22% less peak "
        "memory (bench/RESULTS.md); on the tool-calling set's ~510-token examples padding is 1.37x as fast as "
        "packing. Examples of a batch that begin alike (a system prompt, tool definitions; prompt tokens only) "
        "share that beginning in the row: computed once, every example attends to it at the positions it has alone "
        "(checked exact on the loaded model at the start, sdpa attention): on the tool-calling set (~450 of ~513 "
        "tokens alike, batches of 2, SmolLM2-135M) 1.64x as fast as padding. Preference pairs (dpo, orpo, simpo; "
        "unless packing is false) go the same way: a batch's pairs in one row, the common beginning and each pair's "
        "prompt once, its chosen and rejected answers after it (DPO on SmolLM2-135M, batches of 4 pairs: 2.4x).")
    group_by_length: bool = Field(False, description="Batch examples of similar length together to waste less padding. "
        "Off by default: on small datasets it fills batches with near-identical examples and slows learning "
        "(measured: validation loss 1.13 vs 0.48 after the same steps, bench/RESULTS.md).")
    fast_loss: bool = Field(True, description="Compute logits only where there are labels, in chunks (same loss, much faster for large vocabularies).")
    loss_chunk_size: int = Field(128, ge=16, description="fast_loss: supervised positions per logits chunk; each chunk holds chunk x vocabulary floats (lower = less memory, below ~64 slower).")
    frozen_dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="Keep the frozen base weights in this dtype "
        "while training adapter methods (lora, qlora's embeddings, prefix, prompt, adapter). 'bfloat16' halves their memory "
        "(Gemma 3 270M: 1.07 -> 0.54 GB). In fp32 training the arithmetic stays float32, each weight widened just before its "
        "matmul; in bf16 mixed precision the weight goes into the matmul as it is. The frozen weights are rounded to bf16, as "
        "when a GPU loads its base in bf16. 'auto': bfloat16 when the run trains in bf16 mixed precision (train.precision; "
        "its matmuls round the weights to bf16 anyway) or when the checkpoint stores its weights in bfloat16, as most "
        "Hub models do (kept as stored, so no value changes; LoRA then loads its base without a float32 copy: "
        "Qwen2.5-1.5B's load peak 9.2 -> 0.4 GB, weights 6.2 -> 3.1 GB), else float32.")
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch (training, eval and chat). Default: one per core that other processes leave free, measured at start; OMP_NUM_THREADS is honoured.")
    flush_denormal: bool = Field(True, description="CPU: treat denormal floats (below ~1e-38) as zero during training. Late in a run "
        "tiny gradients and Adam states become denormal and each such multiply is many times slower (measured: 229 -> 163 "
        "tokens/s over one run; 220 tokens/s throughout with this on, same loss).")
    resume: bool = Field(False, description="Continue from the newest checkpoint of this run directory.")
    l1: float = Field(0.0, ge=0, description="L1 penalty on trainable parameters added to the loss (pushes weights to exactly zero; 0 = off).")
    l2: float = Field(0.0, ge=0, description="L2 penalty added to the training loss: l2 x the sum of squared trainable "
        "parameters (the guides' 'L2 regularisation' taken literally; 0 = off). Unlike train.weight_decay it goes "
        "through the gradient, so Adam rescales it per weight.")
    neftune_alpha: float | None = Field(None, gt=0, description="NEFTune: noise added to input embeddings during training only (5 is typical; None = off).")
    generation_check: bool = Field(True, description="Answer a fixed sample of validation prompts greedily before training and at "
        "evaluations, and log whether the answers stop on their own, repeat themselves, match the references (ROUGE-L, exact "
        "match) and name the data's key terms (a new name, a maker, a label). The verdict, the best checkpoint and early "
        "stopping use these rates, because a low loss can hide a model that never stops. Needs a validation set.")
    generation_check_samples: int = Field(8, ge=1, description="generation_check: validation prompts answered at each check "
        "(shorter references preferred, so answers have room to finish).")
    generation_check_every: int = Field(1, ge=1, description="generation_check: run it at every N-th evaluation "
        "(between checks the latest rates are carried forward).")
    generation_check_budget: float = Field(0.2, ge=0, le=1, description="generation_check: the largest share of the "
        "training time the check may take. A check that falls due while the checks so far already took more is skipped "
        "and the latest rates are carried forward: at an evaluation that cannot become the best checkpoint (its "
        "validation loss is not below the best guarded loss so far), or at one that could while the latest rates were "
        "clean (every answer stopped and named the key terms). While answers misbehave, every evaluation that could "
        "become the best is checked, so the best checkpoint and early stopping never pass over a problem on carried "
        "rates; the check before training and the one that scores the saved model always run. "
        "Decoding a few answers costs about as much as many training steps (measured on Gemma 3 270M: 46 of 126 s of "
        "an identity run with every check), so a long run past its best point would spend much of its time checking. "
        "1 = every due check runs.")
    generation_check_max_new_tokens: int | None = Field(None, ge=1, description="generation_check: longest answer generated. "
        "Default: twice the longest reference in the sample (or twice the 95th-percentile training answer, if longer) + 16 "
        "tokens, so an answer that has not stopped by then would not.")


PREFERENCE_STAGES = ("dpo", "orpo", "simpo", "kto")
PAIR_STAGES = ("dpo", "orpo", "simpo")  # trained on a chosen and a rejected answer; kto on single labelled answers


class PreferenceConfig(Section):
    beta: float | None = Field(None, gt=0, description="How strongly the policy is tied to the reference (dpo, kto: "
        "the temperature of the implicit reward, default 0.1; smaller lets the model move further), SimPO's reward scale "
        "(default 2.0) and ORPO's weight of the odds-ratio term (default 0.1).")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="dpo: the loss on the reward margin: "
        "sigmoid (the DPO paper), ipo (squared, saturates less: steadier on small or noisy data), hinge (SLiC).")
    gamma: float = Field(1.0, ge=0, description="simpo: the target margin between the chosen and rejected average "
        "log-probabilities (the paper's gamma; gamma / beta around 0.5).")
    sft_weight: float = Field(0.0, ge=0, description="dpo, simpo: add this weight times the SFT loss on the chosen "
        "answers (RPO/CPO's alpha): keeps the chosen answers likely, against the log-probability of both falling. "
        "orpo always adds it with weight 1.")
    label_smoothing: float = Field(0.0, ge=0, le=0.5, description="dpo (sigmoid): the share of pairs assumed to be "
        "labelled the wrong way round (conservative DPO); 0 trusts every label.")
    desirable_weight: float = Field(1.0, gt=0, description="kto: weight of the examples labelled desirable.")
    undesirable_weight: float = Field(1.0, gt=0, description="kto: weight of the examples labelled undesirable "
        "(raise it when they are fewer, so both sides pull about equally).")
    precompute_reference: bool = Field(False, description="dpo, kto: compute the reference model's log-probabilities "
        "once, before training, instead of at every step with the adapter switched off (faster over several epochs). "
        "Always on for full/freeze and for an adapter continued from an earlier run, whose reference is not the "
        "adapter switched off.")

    def resolved_beta(self, stage: str) -> float:
        return self.beta if self.beta is not None else (2.0 if stage == "simpo" else 0.1)


class GenerationConfig(Section):
    max_new_tokens: int = Field(128, ge=1, description="Longest answer generated.")
    temperature: float = Field(0.7, ge=0, description="Randomness: 0 = greedy (deterministic), 0.7 typical for chat, > 1 wild.")
    top_k: int = Field(50, ge=0, description="Sample only from the k most likely tokens (0 = off).")
    top_p: float = Field(0.9, gt=0, le=1, description="Sample from the smallest set of tokens whose probability reaches p.")
    repetition_penalty: float = Field(1.1, gt=0, description="> 1 discourages repeating tokens; 1.0 = off.")


class EvalConfig(Section):
    max_new_tokens: int = Field(128, ge=1, description="Longest answer generated during evaluation (greedy).")
    batch_size: int = Field(8, ge=1, description="Prompts generated at once.")
    max_samples: int | None = Field(200, ge=1, description="Evaluate at most this many validation prompts.")


class DistributedConfig(Section):
    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="How several processes share the work: ddp (each holds the model, gradients averaged), "
        "fsdp (parameters, gradients and optimiser states sharded), deepspeed (ZeRO stages via a JSON config)."
    )
    backend: Literal["auto", "nccl", "gloo"] = Field("auto", description="Communication backend: nccl on GPUs, gloo on CPUs ('auto' picks).")
    fsdp: str = Field("full_shard auto_wrap", description="fsdp: sharding options (transformers' `fsdp` argument), e.g. 'full_shard auto_wrap' or 'shard_grad_op'.")
    fsdp_offload: bool = Field(False, description="fsdp: keep sharded parameters in CPU memory between uses (fits larger models, slower).")
    deepspeed: str | None = Field(None, description="deepspeed: path to a DeepSpeed JSON config (ZeRO-2 / ZeRO-3); see examples/distributed/.")


class Config(Section):
    run: RunConfig = Field(default_factory=RunConfig, description="Where the run directory goes.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The model to fine-tune.")
    data: DataConfig = Field(default_factory=DataConfig, description="Datasets, splits, lengths and cleaning.")
    template: TemplateConfig = Field(default_factory=TemplateConfig, description="Chat template.")
    method: MethodConfig = Field(default_factory=MethodConfig, description="Tuning method and its parameters.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation and schedule.")
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig, description="Preference training (train.stage dpo, orpo, simpo, kto).")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Sampling for chat and export.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")
    distributed: DistributedConfig = Field(default_factory=DistributedConfig, description="Multi-process / multi-node training.")
