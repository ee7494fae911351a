"""Errors meant for people: what went wrong, where, and what to do.

Every user mistake raises a subclass of `TunewiseError`; the CLI prints its message
without a traceback and exits with status 2.
"""

from __future__ import annotations


class TunewiseError(Exception):
    """A user-facing error. `where` names the file/line/key, `fix` says what to do."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.render())

    def render(self) -> str:
        parts = []
        if self.where:
            parts.append(f"{self.where}: {self.what}")
        else:
            parts.append(self.what)
        if self.fix:
            parts.append(f"  fix: {self.fix}")
        return "\n".join(parts)


class ConfigError(TunewiseError):
    """A config file or --set override is wrong."""


class DataError(TunewiseError):
    """A dataset file or record is wrong."""


class ModelError(TunewiseError):
    """A model cannot be found or loaded."""


class RunError(TunewiseError):
    """A run directory is missing something a stage needs."""


class MissingExtra(TunewiseError):
    """An optional part of tunewise (an extra such as tunewise[export]) is not installed."""
