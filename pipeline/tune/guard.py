"""Ending a sweep early, resumably: on SIGINT or SIGTERM, and when a service it needs stops answering.

The sweep's reachable runs are closed KILLED, no results are written, the Tune folder stays as it is, and the stage
exits non-zero with one line (`SweepInterrupted`); the same command then resumes the sweep.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from pipeline import tracking
from pipeline.tune.resume import unfinished_trials

# SERVICE_LOST_AFTER_S and STUCK_AFTER_S can be shortened through the environment (PIPELINE_SERVICE_LOST_AFTER_S,
# PIPELINE_STUCK_AFTER_S), for tests/test_interrupts.py, which kills a tracking server on purpose: with the defaults
# it waits half a minute for the watchdog, and its trials must train through that wait. Unset, the defaults hold.
# A tracking store or Ray GCS that has not answered for this long is lost.
SERVICE_LOST_AFTER_S = float(os.environ.get("PIPELINE_SERVICE_LOST_AFTER_S", "20"))
RAYLET_LOST_AFTER_S = 3.0  # this node's raylet: Ray itself ends a driver about 10 s after its raylet goes
PROBE_EVERY_S = 1.0  # the watchdog's probes: a TCP connect or one /health request each
PROBE_TIMEOUT_S = 3.0
# The driver's own thread has this long to end a sweep whose tracking store is lost.
STUCK_AFTER_S = float(os.environ.get("PIPELINE_STUCK_AFTER_S", "10"))
EXIT_STOPPED = 75  # EX_TEMPFAIL (sysexits.h): stopped before the end, not by a signal; run it again later


class StopSweep(Exception):
    """Raised in Tune's loop to end the sweep before its trials end. An Exception, not a BaseException: Tune's loop
    then stops its trial actors on the way out (`TuneController.cleanup`), before their runs are closed."""

    def __init__(self, message: str, code: int, end_reason: str):
        super().__init__(message)
        self.message, self.code, self.end_reason = message, code, end_reason


class SweepInterrupted(SystemExit):
    """What `run_study` raises when its sweep stopped early, after printing why on one line. A SystemExit, so that a
    stage process ends with `code` (130 SIGINT, 143 SIGTERM, EXIT_STOPPED otherwise) and no traceback."""

    def __init__(self, message: str, code: int):
        super().__init__(code)
        self.message = message


@dataclass(frozen=True)
class Service:
    """Something a sweep cannot go on without, and how to tell that it is still there."""

    name: str  # as the one-line message names it
    answers: Callable[[], bool]
    lost_after_s: float = SERVICE_LOST_AFTER_S
    # Tune's loop needs it to stop its trials (Ray): without it, the loop blocks in Ray's calls until Ray ends the
    # process, so the watchdog ends the sweep itself.
    loop_needs_it: bool = False


def tcp_answers(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether something accepts a TCP connection at `host:port` (Ray's GCS, a raylet). Asking Ray itself would
    block: a driver's calls wait for a lost GCS to come back, and Ray ends the process when it does not."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
        return True
    except (OSError, ValueError):
        return False


def sweep_services(uri: str) -> list[Service]:
    """What a sweep needs: its tracking store, the Ray runtime's GCS and this node's raylet (the driver's link to
    Ray; a raylet does not come back)."""
    import ray

    gcs = ray.get_runtime_context().gcs_address
    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    raylet = f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    store = "server" if uri.startswith(("http://", "https://")) else "store"
    return [
        Service(f"the MLflow tracking {store} {uri}", functools.partial(tracking.store_answers, uri, PROBE_TIMEOUT_S)),
        Service(f"the Ray runtime at {gcs}", functools.partial(tcp_answers, gcs), loop_needs_it=True),
        Service(
            f"this node's Ray raylet at {raylet}",
            functools.partial(tcp_answers, raylet),
            lost_after_s=RAYLET_LOST_AFTER_S,
            loop_needs_it=True,
        ),
    ]


def close_reachable_runs(uri: str, experiment_id: str, parent_id: str, end_reason: str) -> None:
    """Close the sweep's runs still RUNNING (its trials' and its parent) as KILLED, if the tracking store answers.
    What cannot be reached now is closed by the next run of the sweep (`stale_driver`)."""
    if not tracking.store_answers(uri, PROBE_TIMEOUT_S):
        return
    try:
        tracking.close_unfinished(uri, experiment_id, parent_id, "KILLED", end_reason)
        tracking.client(uri).set_terminated(parent_id, status="KILLED")
    except Exception:  # noqa: BLE001 - lost in the meantime: the next run closes them
        pass


class SweepGuard:
    """For the duration of one sweep: SIGINT or SIGTERM, or a lost service, end it early and resumably.

    Signals: the first is only recorded, and Tune's loop raises it (`check`, from SweepCallback between two steps:
    never in the middle of writing its state) and stops its trials on the way out; a second one raises at once,
    wherever the driver is. Tune's own SIGINT handler is turned off (`TUNE_DISABLE_SIGINT_HANDLER`, a documented
    setting): it made `fit()` return as if the sweep completed.

    Services: a watchdog thread probes them every PROBE_EVERY_S. A tracking store silent for its `lost_after_s` is
    raised in Tune's loop the same way; if the driver's thread is stuck (in an MLflow call, say) for STUCK_AFTER_S
    more, or at once for a lost Ray runtime (Tune's loop cannot stop trials without it), the watchdog closes what it
    can reach (`close_runs`), prints the one line and ends the process with EXIT_STOPPED."""

    def __init__(self, study: str, services: list[Service]):
        self.study = study
        self.services = services
        self.signal: int | None = None
        self.lost: StopSweep | None = None
        self.close_runs: Callable[[str], None] = lambda end_reason: None  # set once the sweep's parent run is open
        self.previous: dict[int, Any] = {}
        self._done = threading.Event()
        self._ending = threading.Lock()  # one of the driver's thread and the watchdog says the last word
        self._watchdog = threading.Thread(target=self._watch, name="sweep-watchdog", daemon=True)

    def __enter__(self) -> SweepGuard:
        os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._on_signal)
        self._watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._done.is_set():  # the sweep is being closed: that takes a few MLflow calls
            return
        if self.signal is not None:
            raise self.interrupted()
        self.signal = signum

    def interrupted(self) -> StopSweep:
        sig = self.signal or signal.SIGINT
        return StopSweep(
            f"interrupted by {signal.Signals(sig).name}; run the same command again to resume",
            128 + sig,
            "driver_interrupted",
        )

    @staticmethod
    def service_lost(service: Service, silent_s: float) -> StopSweep:
        silent = f"no answer for {silent_s:.0f} s" if silent_s >= 1 else "it does not answer"
        return StopSweep(
            f"lost {service.name} ({silent}); once it is back, run the same command again to resume",
            EXIT_STOPPED,
            "service_lost",
        )

    def check(self) -> None:
        """Raise StopSweep if a signal arrived or a service is lost (the driver's thread, between Tune's steps)."""
        if self.signal is not None:
            raise self.interrupted()
        if self.lost is not None:
            raise self.lost

    def check_finished(self, tune_dir: Path) -> None:
        """After Tune's loop returned: raise StopSweep if it should not have, or a trial is unfinished."""
        self.check()
        left = unfinished_trials(tune_dir)
        if left:
            raise StopSweep(
                f"stopped by Ray Tune with {len(left)} trials unfinished; run the same command again to resume",
                EXIT_STOPPED,
                "driver_interrupted",
            )

    def lost_now(self) -> StopSweep | None:
        """After the sweep failed: why, if a signal came or a service does not answer now."""
        if self.signal is not None:  # Ctrl-C in a terminal reaches `make repro`'s Ray session too, which stops Ray
            return self.interrupted()
        if self.lost is not None:
            return self.lost
        return next((self.service_lost(s, 0) for s in self.services if not s.answers()), None)

    def end_early(self, stop: StopSweep) -> NoReturn:
        """The driver's thread ends the sweep: close what can be reached, say why on one line, raise
        SweepInterrupted. If the watchdog is ending the process already, wait for it."""
        if not self._begin_end():
            threading.Event().wait()
        self._last_word(stop)
        raise SweepInterrupted(stop.message, stop.code)

    def _begin_end(self) -> bool:
        """Claim the sweep's ending (closing runs, the one line); False if the other thread has it."""
        self._done.set()
        return self._ending.acquire(blocking=False)

    def _last_word(self, stop: StopSweep) -> None:
        try:
            self.close_runs(stop.end_reason)
        finally:
            print(f"[{self.study}] {stop.message}", file=sys.stderr, flush=True)

    def _watch(self) -> None:
        silent_since: dict[str, float] = {}
        while not self._done.wait(PROBE_EVERY_S):
            now = time.monotonic()
            for service in self.services:
                if service.answers():
                    silent_since.pop(service.name, None)
                    continue
                silent_s = now - silent_since.setdefault(service.name, now)
                if silent_s < service.lost_after_s:
                    continue
                self.lost = self.service_lost(service, silent_s)
                if service.loop_needs_it or not self._done.wait(STUCK_AFTER_S):
                    self._end_process(self.lost if self.signal is None else self.interrupted())
                return

    def _end_process(self, stop: StopSweep) -> None:
        """The watchdog's ending, for a driver's thread that cannot: close what can be reached, one line, exit."""
        if not self._begin_end():
            return
        try:
            self._last_word(stop)
        finally:
            sys.stdout.flush()
            os._exit(stop.code)
