"""Sweep progress for people and log files: one plain line per event, never a redrawn table.

    [   12s] activations  done   relu seed=1  val_accuracy 0.9721  | 3 done, 2 running, 0 failed, 5 pending
             | best 0.9721 relu seed=1     (one line in the log; wrapped here)

Events: a trial starts, finishes or fails, the best value so far improves, and a heartbeat when nothing
else was printed for `heartbeat_s`. Colour only on a terminal; a file or a pipe gets plain ASCII text.
Hook it into Tune with `RunConfig(callbacks=[..., TrialProgress(name, metric, mode)], verbose=0)`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ray.tune import Callback

_COLORS = {"start": "36", "done": "32", "failed": "31", "retry": "33", "best": "1;33"}


def default_label(config: dict[str, Any]) -> str:
    """`relu seed=1` from {"model.activation": "relu", "seed": 1}: the swept values, then the seed (a listed trial's
    values are under one key: {"trial": {...}})."""
    if len(config) == 1 and isinstance(next(iter(config.values())), dict):
        config = next(iter(config.values()))
    parts = [str(v) if len(config) <= 2 else f"{k.rsplit('.', 1)[-1]}={v}" for k, v in config.items() if k != "seed"]
    if "seed" in config:
        parts.append(f"seed={config['seed']}")
    return " ".join(parts) or "base"


class TrialProgress(Callback):
    """A Tune callback printing one line per trial event with the sweep's counts and best so far."""

    def __init__(
        self,
        name: str,
        metric: str,
        mode: str = "max",
        stream: TextIO | None = None,
        label: Callable[[dict[str, Any]], str] = default_label,
        heartbeat_s: float = 60.0,
        color: bool | None = None,
    ):
        self.name, self.metric, self.mode = name, metric, mode
        self.stream = stream or sys.stdout
        self.label = label
        self.heartbeat_s = heartbeat_s
        self.color = self.stream.isatty() if color is None else color
        self.t0 = self.last_line = time.monotonic()
        self.total: int | None = None
        self.best: tuple[float, str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; a stream does not pickle (pytest's captured
        # stdout, a log file), and a restored sweep prints to its own stdout.
        return {**self.__dict__, "stream": None}

    # ---- formatting

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def _counts(self, trials: list, trial=None, now: str | None = None) -> str:
        # Tune calls on_trial_start before it marks the trial RUNNING and on_trial_complete before
        # TERMINATED: count the trial of the event in the state the event announces.
        status = [now if now and t is trial else getattr(t, "status", "") for t in trials]
        done = sum(s == "TERMINATED" for s in status)
        running = sum(s == "RUNNING" for s in status)
        failed = sum(s == "ERROR" for s in status)
        pending = sum(s in ("PENDING", "PAUSED") for s in status)
        of = f"/{self.total}" if self.total else ""
        return f"{done}{of} done, {running} running, {failed} failed, {pending} pending"

    def _best(self) -> str:
        return f"best {self.best[0]:.4g} {self.best[1]}" if self.best else "best -"

    def line(self, event: str, trial, trials: list, detail: str = "", now: str | None = None) -> str:
        word = f"{event:<7}"
        if self.color and event in _COLORS:
            word = f"\033[{_COLORS[event]}m{word}\033[0m"
        label = self.label(getattr(trial, "config", {}) or {}) if trial is not None else ""
        head = f"[{time.monotonic() - self.t0:5.0f}s] {self.name}  {word}{label}"
        if detail:
            head += f"  {detail}"
        return f"{head}  | {self._counts(trials, trial, now)} | {self._best()}"

    def emit(self, *args, **kwargs) -> None:
        print(self.line(*args, **kwargs), file=self.stream or sys.stdout, flush=True)
        self.last_line = time.monotonic()

    def _value(self, result: dict[str, Any] | None) -> float | None:
        v = (result or {}).get(self.metric)
        return float(v) if isinstance(v, int | float) else None

    # ---- Tune events

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self.t0 = self.last_line = time.monotonic()  # the sweep's clock, not Ray's start-up
        self.total = total_num_samples if total_num_samples and total_num_samples > 0 else None

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.emit("start", trial, trials, f"(trial {trial.trial_id})", now="RUNNING")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        value = self._value(result)
        if value is not None and self._better(value):
            self.best = (value, self.label(trial.config or {}))
            epoch = result.get("epoch", result.get("training_iteration"))
            self.emit("best", trial, trials, f"{self.metric} {value:.4g} at epoch {epoch:g}")
        elif time.monotonic() - self.last_line >= self.heartbeat_s:
            self.emit("running", None, trials)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        value = self._value(getattr(trial, "last_result", None))
        detail = f"{self.metric} {value:.4g}" if value is not None else ""
        self.emit("done", trial, trials, detail, now="TERMINATED")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self.emit("retry", trial, trials, f"(trial {trial.trial_id} failed; restarting from its last checkpoint)")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.emit("failed", trial, trials, f"(trial {trial.trial_id}; no retries left)", now="ERROR")

    def on_experiment_end(self, trials: list, **info) -> None:
        self.emit("end", None, trials, f"after {time.monotonic() - self.t0:.0f}s")
