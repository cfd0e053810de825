"""Command-line entry points. Every one turns a ConfigError into one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


def guarded(main: Callable[..., int | None]) -> Callable[..., int]:
    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        from pipeline.errors import ConfigError

        try:
            return main(*args, **kwargs) or 0
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapper


def main(argv: list[str] | None = None) -> int:
    print("pipeline: CLI not yet implemented", file=sys.stderr)
    return 1
