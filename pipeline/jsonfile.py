"""Reading the JSON files stages hand each other (results, reports, specs) as one-line errors, and naming a value's
JSON type in them. A leaf above `errors`: the report, the index page, the CLI and the stages share it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


def read_json(path: str | Path, remedy: str) -> Any:
    """A JSON file's content; a missing, unreadable or malformed file is a ConfigError naming it, ending in `remedy`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"missing; {remedy}", file=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"not readable JSON ({e}); {remedy}", file=str(path)) from None


def json_kind(value: Any) -> str:
    """What a JSON value is, for an error message: "a JSON object", "a list", "null", ..."""
    names = {
        dict: "a JSON object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a count


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
