"""Typed config: pydantic schema per section, YAML loading, --set overrides, friendly errors."""

from tunewise.config.load import load_config, resolve, dump_config  # noqa: F401
from tunewise.config.schema import Config  # noqa: F401
