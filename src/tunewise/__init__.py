"""tunewise: from raw data to a fine-tuned LLM that behaves.

The Python API (tunewise/api.py): `tunewise.train`, `tunewise.Run` (evaluate, chat, export), `tunewise.prepare_data`,
`tunewise.advise`, `tunewise.explain`, `tunewise.load_config`. Importing tunewise is light: each loads on first use.
"""

import os as _os

__version__ = "0.1.0"
__all__ = ["Run", "advise", "explain", "load_config", "prepare_data", "train"]

# Libraries tunewise drives may phone home (huggingface_hub telemetry, gradio analytics); nothing tunewise does
# needs that. Set before those libraries are imported, and only where the user has not chosen otherwise.
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def __getattr__(name: str):
    if name in ("train", "advise"):  # subpackages that are also callable (tunewise/_callable.py)
        import importlib

        return importlib.import_module(f"tunewise.{name}")
    if name in __all__:
        from tunewise import api

        return getattr(api, name)
    raise AttributeError(f"module 'tunewise' has no attribute '{name}'")


def _api_function(name: str):
    from tunewise import api

    return getattr(api, name)


def __dir__():
    return sorted(list(globals()) + __all__)


from tunewise import _callable as _callable_modules  # after the names it needs are defined

_callable_modules.set_api(_api_function)
