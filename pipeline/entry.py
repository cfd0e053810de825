"""What every entry point shares (the DVC stages, the `pipeline` CLI, `rerun`, `ray_session`): bad input as one
line and exit code 2, plain log lines, and a fast exit. A leaf above `errors` only, so a stage imports just
what its own job needs."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from pipeline.errors import ConfigError


def guarded(main: Callable[..., int | None]) -> Callable[..., int]:
    """`main` returning an exit code; a ConfigError becomes `error: FILE: KEY: MESSAGE` on stderr and code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapper


def exit_now(code: int) -> NoReturn:
    """End a stage process without the interpreter's teardown, which took 3-4 s per stage here (in native code,
    after the last Python frame: Ray's, gRPC's and torch's threads), i.e. about 1.5 minutes of a default `dvc repro`.
    Only for a stage whose work is done and closed: its files are written, its MLflow calls returned (stages log
    synchronously), Ray is disconnected here, and the streams and log handlers are flushed."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def setup_logging(level: int = logging.INFO) -> None:
    """The library's warnings and notes as plain `warning: ...` lines on stderr (stages and the CLI)."""
    logger = logging.getLogger("pipeline")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LineFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


class ArgParser(argparse.ArgumentParser):
    """Bad usage is one line and exit code 2 (argparse's default prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)
