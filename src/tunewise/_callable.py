"""`tunewise.train(...)` and `tunewise.advise(...)` are API functions whose names are also subpackages.

`import tunewise.train.workflow` sets the attribute `tunewise.train` to the subpackage, so a plain function of that
name would be replaced as soon as anything imports the stage. Instead the two subpackages are callable modules:
calling one runs the API function of the same name (tunewise/api.py), while `tunewise.train.workflow` and every
other import of the stage work as before.

The stages sit below the API, so this module does not import it: tunewise/__init__.py (which Python runs
before any subpackage) hands in the function that finds an API function by name (`set_api`).
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Callable


class _ApiModule(types.ModuleType):
    _api_name: str

    def __call__(self, *args, **kwargs):
        return _find_api(self._api_name)(*args, **kwargs)

    @property
    def __signature__(self):  # so help() and notebooks show the API function's parameters
        return inspect.signature(_find_api(self._api_name))


_find_api: Callable[[str], Callable] | None = None


def set_api(find: Callable[[str], Callable]) -> None:
    """find(name) -> the API function of that name (tunewise/__init__.py passes a lazy lookup in tunewise.api)."""
    global _find_api
    _find_api = find


def make_callable(module_name: str, api_name: str) -> None:
    module = sys.modules[module_name]
    module.__class__ = _ApiModule
    module._api_name = api_name
