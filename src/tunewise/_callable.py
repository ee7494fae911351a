"""`tunewise.train(...)` and `tunewise.advise(...)` are API functions whose names are also subpackages.

`import tunewise.train.workflow` sets the attribute `tunewise.train` to the subpackage, so a plain function of that
name would be replaced as soon as anything imports the stage. Instead the two subpackages are callable modules:
calling one runs the API function of the same name (tunewise/api.py), while `tunewise.train.workflow` and every
other import of the stage work as before.
"""

from __future__ import annotations

import inspect
import sys
import types


class _ApiModule(types.ModuleType):
    _api_name: str

    def __call__(self, *args, **kwargs):
        from tunewise import api

        return getattr(api, self._api_name)(*args, **kwargs)

    @property
    def __signature__(self):  # so help() and notebooks show the API function's parameters
        from tunewise import api

        return inspect.signature(getattr(api, self._api_name))


def make_callable(module_name: str, api_name: str) -> None:
    module = sys.modules[module_name]
    module.__class__ = _ApiModule
    module._api_name = api_name
