"""The checks of tunewise.compat's entries: each returns None while the library still has what an intervention
relies on, or a short sentence saying what changed. Each imports its library when it runs.
"""

from __future__ import annotations

import ctypes
import inspect
import mmap
import os
import platform
import threading
import warnings
from typing import Callable

from tunewise.compat.native import (
    LIBC,
    MADV_DONTNEED,
    madvise_dontneed,
    malloc_trim,
    omp_parallel,
    openmp_runtime,
)


def _guarded(fn: Callable[[], str | None]) -> Callable[[], str | None]:
    """A check that answers instead of raising: an error inside it is a change in the library too."""
    def check() -> str | None:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {e}"
    check.__name__ = check.__qualname__ = fn.__name__
    return check


def _method(cls, name: str, params: list[str]) -> str | None:
    """None if cls.name exists and its parameters (after self) begin with `params`."""
    fn = getattr(cls, name, None)
    if fn is None:
        return f"{cls.__qualname__}.{name} is gone"
    have = [p for p in inspect.signature(fn).parameters if p != "self"]
    if have[:len(params)] != params:
        return f"{cls.__qualname__}.{name} now takes ({', '.join(have)}), not ({', '.join(params)})"
    return None


def _source_has(obj, *needles: str) -> str | None:
    src = inspect.getsource(obj)
    missing = [n for n in needles if n not in src]
    return f"{obj.__qualname__} no longer contains {', '.join(missing)}" if missing else None


def _first(*answers) -> str | None:
    return next((a for a in answers if a), None)


# transformers.Trainer ---------------------------------------------------------------
def _trainer():
    from transformers import Trainer

    return Trainer


@_guarded
def load_from_checkpoint():
    T = _trainer()
    return _first(_method(T, "_load_from_checkpoint", ["resume_from_checkpoint", "model"]),
                  _source_has(T, "self._load_from_checkpoint("))


@_guarded
def load_best_model():
    T = _trainer()
    return _first(_method(T, "_load_best_model", []), _source_has(T, "self._load_best_model("))


@_guarded
def save_checkpoint():
    T = _trainer()
    return _first(_method(T, "_save_checkpoint", ["model", "trial"]),
                  _source_has(T, "self._save_checkpoint("),
                  _source_has(T._save_checkpoint, "self._get_output_dir(", "self.args.save_total_limit"))


@_guarded
def get_output_dir():
    return _method(_trainer(), "_get_output_dir", ["trial"])


@_guarded
def loss_hooks():
    T = _trainer()
    return _first(_method(T, "compute_loss", ["model", "inputs", "return_outputs", "num_items_in_batch"]),
                  _method(T, "training_step", ["model", "inputs", "num_items_in_batch"]),
                  _source_has(T, "self.model_accepts_loss_kwargs", "self.current_gradient_accumulation_steps"))


@_guarded
def progress_bar():
    from transformers.trainer_callback import ProgressCallback

    if getattr(ProgressCallback(), "training_bar", 0) is not None:
        return "ProgressCallback no longer starts with training_bar = None"
    return _source_has(ProgressCallback.on_train_begin, "self.training_bar =")


@_guarded
def is_stateful():
    from transformers import PreTrainedModel

    return None if hasattr(PreTrainedModel, "_is_stateful") else "PreTrainedModel._is_stateful is gone"


@_guarded
def scaled_embedding():
    import torch
    from transformers.models.gemma3.modeling_gemma3 import Gemma3TextScaledWordEmbedding

    emb = Gemma3TextScaledWordEmbedding(5, 3, 0, embed_scale=2.0)
    if not (isinstance(emb, torch.nn.Embedding) and torch.is_tensor(getattr(emb, "embed_scale", None))):
        return "Gemma3TextScaledWordEmbedding is no longer an nn.Embedding with an embed_scale tensor"
    ids = torch.tensor([[1, 4]])
    if not torch.equal(emb(ids), torch.nn.functional.embedding(ids, emb.weight, 0) * 2.0):
        return "Gemma3TextScaledWordEmbedding.forward is no longer embedding(ids) * embed_scale"
    return None


# peft ------------------------------------------------------------------------------
@_guarded
def trainable_tokens():
    import torch
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    from peft.utils.other import TrainableTokensWrapper

    called = []

    class Switched(TrainableTokensLayer):
        def forward_adapters(self, x, active_adapters, *args, **kwargs):
            called.append(list(active_adapters))
            return super().forward_adapters(x, active_adapters, *args, **kwargs)

    layer = TrainableTokensLayer(torch.nn.Embedding(5, 3), "default", token_indices=[3, 1])
    layer.update_layer("default", token_indices=[3, 1])
    attrs = ("token_indices", "trainable_tokens_delta", "base_layer", "merged", "disable_adapters", "active_adapters")
    missing = [a for a in attrs if not hasattr(layer, a)]
    if missing:
        return f"TrainableTokensLayer no longer has {', '.join(missing)}"
    if layer.token_indices.get("default") != [3, 1] or tuple(layer.trainable_tokens_delta["default"].shape) != (2, 3):
        return "TrainableTokensLayer no longer keeps token_indices[name] and its rows in trainable_tokens_delta[name]"
    answer = _first(_method(TrainableTokensLayer, "_check_overlapping_tokens", ["adapter_names"]),
                    _method(TrainableTokensLayer, "_get_embed_scale", []),
                    _method(TrainableTokensLayer, "forward_adapters", ["x", "active_adapters"]))
    if answer:
        return answer
    layer._check_overlapping_tokens(["default"])
    layer._get_embed_scale()
    layer.__class__ = Switched
    layer(torch.tensor([[1, 2]]))
    if called != [["default"]]:
        return "TrainableTokensLayer.forward no longer goes through forward_adapters(x, active_adapters)"
    wrapper = TrainableTokensWrapper(torch.nn.Embedding(5, 3), "default", token_indices=[1])
    if type(getattr(wrapper, "token_adapter", None)) is not TrainableTokensLayer:
        return "TrainableTokensWrapper no longer holds its TrainableTokensLayer as token_adapter"
    return None


# torch -------------------------------------------------------------------------------
@_guarded
def class_switch():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Wide(nn.Linear):
        def forward(self, x):
            return x.new_zeros(1)

    lin, hooked = nn.Linear(2, 2), []
    w = lin.weight
    lin.register_forward_hook(lambda *a: hooked.append(1))
    lin.__class__ = Wide
    if lin(torch.ones(1, 2)).shape != (1,) or lin.weight is not w or not hooked:
        return "an nn.Linear switched to a subclass no longer keeps its weight and hooks and runs the subclass forward"
    emb = nn.Embedding(4, 2)
    args = ["input", "weight", "padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse"]
    missing = [a for a in args[2:] if not hasattr(emb, a)]
    if missing:
        return f"nn.Embedding no longer has {', '.join(missing)}"
    have = list(inspect.signature(F.embedding).parameters)
    if have[:len(args)] != args:
        return f"F.embedding now takes ({', '.join(have)})"
    p = nn.Parameter(torch.ones(2, 2), requires_grad=False)
    p.data = torch.ones(2, 2, dtype=torch.bfloat16)
    return None if p.dtype == torch.bfloat16 else "a Parameter's .data can no longer be replaced by a narrower tensor"


@_guarded
def module_dicts():
    from torch import nn

    lin = nn.Linear(2, 2)
    if lin._parameters.get("weight") is not lin.weight:
        return "nn.Module._parameters no longer holds the module's own weight"
    lin.register_forward_hook(lambda *a: None)
    lin.register_forward_pre_hook(lambda *a: None)
    if not (lin._forward_hooks and lin._forward_pre_hooks):
        return "forward hooks are no longer kept in nn.Module._forward_hooks / _forward_pre_hooks"
    import torch

    lin.register_buffer("scale", torch.ones(1))
    lin._buffers["scale"] = torch.zeros(1)  # replaced in place, as widen_all_but_matrices does
    if float(lin.get_buffer("scale")) != 0.0:
        return "nn.Module._buffers no longer holds the module's buffers"
    return None


@_guarded
def forward_attribute():
    import torch
    from torch import nn

    lin = nn.Linear(2, 2)
    lin.forward = lambda x: "patched"
    if lin(torch.ones(1, 2)) != "patched":
        return "nn.Module.__call__ no longer calls a forward set on the instance"
    del lin.forward
    return None if torch.is_tensor(lin(torch.ones(1, 2))) else "deleting the instance's forward no longer restores the class's"


@_guarded
def openmp_region():
    import torch

    lib = openmp_runtime(prefer=os.path.dirname(torch.__file__))
    if lib is None:
        return "no loaded OpenMP runtime has GOMP_parallel (torch's libgomp)"
    seen: list[int] = []
    omp_parallel(lib, lambda: seen.append(threading.get_ident()), 2)
    return None if len(set(seen)) == 2 else f"GOMP_parallel ran the function on {len(set(seen))} threads of 2"


# glibc and Python --------------------------------------------------------------------
@_guarded
def libc_malloc_trim():
    return None if malloc_trim() else f"malloc_trim does not resolve in {LIBC}"


@_guarded
def libc_mallopt():
    # In a child process: the setting is process-wide and would stay in this one.
    import subprocess
    import sys

    code = ("import sys; from tunewise.compat.native import malloc_mmap_threshold as t; "
            "sys.exit(0 if t(1 << 20) else 3)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return None if r.returncode == 0 else f"mallopt(M_MMAP_THRESHOLD) is refused or missing in {LIBC}: {r.stderr[-200:]}"


@_guarded
def libc_madvise():
    if getattr(mmap, "MADV_DONTNEED", MADV_DONTNEED) != MADV_DONTNEED:
        return f"MADV_DONTNEED is {mmap.MADV_DONTNEED} here, not {MADV_DONTNEED}"
    page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE)  # anonymous, private: dropped pages read 0
    try:
        page[:1] = b"x"
        cell = ctypes.c_char.from_buffer(page)
        ok = madvise_dontneed(ctypes.addressof(cell), mmap.PAGESIZE)
        del cell
        if not ok:
            return "madvise does not resolve in the C library"
        return None if page[:1] == b"\0" else "madvise(MADV_DONTNEED) left an anonymous page's contents in place"
    finally:
        page.close()


@_guarded
def libc_madvise_pageout():
    """A page of a private file mapping, written to (copied on write), keeps its contents through MADV_PAGEOUT: the
    call never loses data, so it is safe on a checkpoint's mapping whatever was done to it."""
    import tempfile

    from tunewise.compat.native import madvise_pageout

    with tempfile.TemporaryFile() as f:
        f.write(b"a" * mmap.PAGESIZE)
        f.flush()
        page = mmap.mmap(f.fileno(), mmap.PAGESIZE, flags=mmap.MAP_PRIVATE)
        try:
            page[:1] = b"x"
            cell = ctypes.c_char.from_buffer(page)
            ok = madvise_pageout(ctypes.addressof(cell), mmap.PAGESIZE)
            del cell
            if not ok and platform.system() == "Linux":
                return "madvise(MADV_PAGEOUT) is refused here (a Linux kernel before 5.4?): checkpoint pages stay resident while loading"
            return None if page[:2] == b"xa" else "madvise(MADV_PAGEOUT) changed a page's contents"
        finally:
            page.close()


@_guarded
def futurewarning_filter():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.warn("deprecated", FutureWarning, stacklevel=1)
        warnings.warn("kept", UserWarning, stacklevel=1)
    got = [w.category for w in seen]
    return None if got == [UserWarning] else f"the FutureWarning filter let through {got}"


# bitsandbytes ------------------------------------------------------------------------
@_guarded
def bnb_flag():
    import bitsandbytes as bnb

    if not hasattr(bnb.nn.Linear4bit(4, 4), "support_avx512bf16_for_cpu"):
        return "bitsandbytes' Linear4bit no longer has the support_avx512bf16_for_cpu flag"
    return _source_has(bnb.nn.Linear4bit.forward, "self.support_avx512bf16_for_cpu")


# llama.cpp: converter, gguf, llama-cpp-python ---------------------------------------
@_guarded
def converter():
    import conversion

    if not hasattr(conversion.ModelType, "TEXT"):
        return "conversion.ModelType.TEXT is gone"
    init = conversion.ModelBase.__init__
    kwargs = dict(is_big_endian=False, use_temp_file=False, eager=False, metadata_override=None, model_name=None,
                  split_max_tensors=0, split_max_size=0, dry_run=False, small_first_shard=False, remote_hf_model_id=None)
    try:
        inspect.signature(init).bind(None, "dir", "ftype", "out", **kwargs)
    except TypeError as e:
        return f"ModelBase() no longer takes the arguments _convert passes: {e}"
    answer = _first(_method(conversion.ModelBase, "load_hparams", ["dir_model", "is_mistral_format"]),
                    _source_has(init, "self.dir_model", "self.hparams", "self.gguf_writer"))
    if answer or [p for p in inspect.signature(conversion.get_model_architecture).parameters] != ["hparams", "model_type"]:
        return answer or "get_model_architecture no longer takes (hparams, model_type)"
    try:
        conversion.get_model_class("NoSuchArchitecture", mmproj=False)
        return "get_model_class no longer raises NotImplementedError for an unknown architecture"
    except NotImplementedError:
        pass
    for arch in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Gemma3ForCausalLM"):
        cls = conversion.get_model_class(arch, mmproj=False)
        answer = _first(*(_method(cls, m, p) for m, p in (("set_vocab", []), ("get_vocab_base_pre", ["tokenizer"]),
                                                           ("set_gguf_parameters", []), ("write", []))),
                        None if hasattr(cls, "model_arch") else f"{cls.__name__}.model_arch is gone")
        if answer:
            return answer
    return _source_has(conversion.get_model_class("LlamaForCausalLM").get_vocab_base_pre, "raise NotImplementedError")


@_guarded
def gguf_writer():
    import gguf

    w = gguf.GGUFWriter(None, "llama")
    calls = ["add_tokenizer_model", "add_tokenizer_pre", "add_token_list", "add_token_scores", "add_token_types",
             "add_add_space_prefix", "add_sliding_window_pattern", "add_bos_token_id", "add_eos_token_id",
             "add_eot_token_id", "add_pad_token_id", "add_unk_token_id", "add_add_bos_token", "add_add_eos_token",
             "add_chat_template"]
    missing = [c for c in calls if not callable(getattr(w, c, None))]
    missing += [] if isinstance(getattr(w, "kv_data", None), list) else ["kv_data"]
    missing += [f"TokenType.{t}" for t in ("NORMAL", "UNKNOWN", "CONTROL", "USER_DEFINED", "UNUSED", "BYTE")
                if not hasattr(gguf.TokenType, t)]
    missing += [f"LlamaFileType.{t}" for t in ("ALL_F32", "MOSTLY_F16", "MOSTLY_BF16", "MOSTLY_Q8_0")
                if not hasattr(gguf.LlamaFileType, t)]
    missing += [] if hasattr(gguf.MODEL_ARCH, "GEMMA3") else ["MODEL_ARCH.GEMMA3"]
    key = getattr(getattr(gguf.Keys, "Attention", None), "SLIDING_WINDOW_PATTERN", "")
    missing += [] if "{arch}" in key else ["Keys.Attention.SLIDING_WINDOW_PATTERN"]
    return f"gguf no longer has {', '.join(missing)}" if missing else None


@_guarded
def llama_quantize():
    import llama_cpp

    missing = [n for n in ("llama_model_quantize", "llama_model_quantize_default_params", "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                           "LLAMA_FTYPE_MOSTLY_Q8_0") if not hasattr(llama_cpp, n)]
    if missing:
        return f"llama_cpp no longer has {', '.join(missing)}"
    params = llama_cpp.llama_model_quantize_default_params()
    fields = {f[0] for f in type(params)._fields_}
    if not {"nthread", "ftype"} <= fields:
        return f"llama_model_quantize_params no longer has {', '.join({'nthread', 'ftype'} - fields)}"
    argtypes = getattr(llama_cpp.llama_model_quantize, "argtypes", None)
    if argtypes is not None and (len(argtypes) != 3 or getattr(argtypes[2], "_type_", None) is not type(params)):
        return "llama_model_quantize no longer takes (bytes, bytes, pointer to llama_model_quantize_params)"
    return None


@_guarded
def llama_no_repack():
    import inspect

    import llama_cpp.llama as high
    import llama_cpp.llama_cpp as lc

    if not hasattr(lc, "llama_model_default_params"):
        return "llama_cpp.llama_cpp no longer has llama_model_default_params"
    fields = {f[0] for f in type(lc.llama_model_default_params())._fields_}
    if "use_extra_bufts" not in fields:
        return "llama_model_params no longer has use_extra_bufts"
    if "llama_cpp.llama_model_default_params()" not in inspect.getsource(high.Llama.__init__):
        return "Llama.__init__ no longer takes its model parameters from llama_cpp.llama_model_default_params()"
    return None


# sqlparse -------------------------------------------------------------------------------
@_guarded
def sqlparse_lexer():
    from sqlparse import keywords, tokens
    from sqlparse.engine.statement_splitter import StatementSplitter
    from sqlparse.lexer import Lexer

    answer = _first(*(_method(Lexer, m, p) for m, p in (("default_initialization", []), ("set_SQL_REGEX", ["SQL_REGEX"]),
                                                        ("get_tokens", ["text"]))),
                    _method(StatementSplitter, "process", ["stream"]))
    if answer:
        return answer
    rules = keywords.SQL_REGEX
    if not hasattr(keywords, "PROCESS_AS_KEYWORD") or not all(len(r) == 2 and isinstance(r[0], str) for r in rules):
        return "keywords.SQL_REGEX is no longer a list of (regex, token type) with PROCESS_AS_KEYWORD"
    if not any(tt is tokens.String.Single for _, tt in rules):
        return "keywords.SQL_REGEX no longer has a String.Single rule"
    if not any(tt is tokens.String.Symbol and rx.startswith("(") for rx, tt in rules):
        return "keywords.SQL_REGEX no longer has the looser String.Symbol rule starting '(' that sqldump drops"
    lex = Lexer()
    lex.default_initialization()
    lex.set_SQL_REGEX([(r"'(?:[^'\\]|\\[\s\S]|'')*'", tokens.String.Single), (r"[ \t]+", tokens.Whitespace),
                       (r"[(),;]", tokens.Punctuation), (r"\w+", tokens.Name)])
    if Lexer.get_default_instance() is lex:
        return "Lexer() is no longer an instance apart from the global one"
    strings = [v for tt, v in lex.get_tokens("x ('C:\\\\');") if tt is tokens.String.Single]
    if strings != ["'C:\\\\'"]:
        return f"a Lexer instance no longer lexes with its own rules (got {strings})"
    stmts = list(StatementSplitter().process(lex.get_tokens("a;b;")))
    return None if len(stmts) == 2 else f"StatementSplitter split 'a;b;' into {len(stmts)} statements"


def tensor_version():
    import torch

    t = torch.zeros(2)
    before = getattr(t, "_version", None)
    if not isinstance(before, int):
        return "torch tensors no longer have an integer _version"
    t.add_(1)
    if t._version == before:
        return "a tensor's _version no longer changes on an in-place operation"
