"""What a sweep's Tune folder says between two runs of the same command: completed, restorable, or with trials
left unfinished; and what a completed sweep keeps of it.

The folder is named by a hash of everything that defines the sweep (`sweep.sweep_id`), so the same command after a
crash finds it: `Tuner.restore` keeps the finished trials and continues the others from their checkpoints. Every
checkpoint stays while the sweep runs (see `tuner.run_config`); a completed sweep keeps none (`drop_checkpoints`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.tune.ray_workarounds import saved_trials

COMPLETED_MARKER = "SWEEP_COMPLETED"  # written last by a completed sweep: the same command then starts it over


def is_completed(tune_dir: Path) -> bool:
    return (tune_dir / COMPLETED_MARKER).exists()


def mark_completed(tune_dir: Path, parent_run_id: str) -> None:
    tune_dir.mkdir(parents=True, exist_ok=True)
    (tune_dir / COMPLETED_MARKER).write_text(parent_run_id + "\n")


def why_not_restorable(tune_dir: Path) -> str | None:
    """Why Tune's saved state of a sweep cannot be restored, or None. Tune's restore fails on a state that lists no
    trial (its first save lists none, and it saves at most every 10 s, so a driver killed early leaves that) or that
    cannot be read; it would log a traceback and start the sweep over."""
    try:
        if not saved_trials(tune_dir):
            return "its saved state lists no trial"
    except (ValueError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
        return f"its saved state cannot be read: {type(e).__name__}: {e}"
    return None


def unfinished_trials(tune_dir: Path) -> list[str]:
    """The trials Tune's saved state has neither finished nor failed. Tune's loop can return with some (its own
    SIGINT or SIGUSR1 handler stops it): its results then list them as TERMINATED, but its last state does not."""
    return [trial_id for trial_id, status in saved_trials(tune_dir) if status not in ("TERMINATED", "ERROR")]


def drop_checkpoints(storage: Path, tune_name: str) -> int:
    """Delete the checkpoint folders of a completed sweep's trials (Tune's, and Ray Train's of DDP trials, which
    live in `<tune_name>-<trial id>`); returns the bytes freed. What `rerun` and the report read is in MLflow:
    config.yaml, the logged model, the metrics. Tune's experiment state stays as it is (a few kB per trial, still
    loadable), naming checkpoints that only a restore would read: a completed sweep is started over, not restored."""
    folders = [
        *storage.glob(f"{tune_name}/*/checkpoint_*"),
        *storage.glob(f"{tune_name}/look-*/*/checkpoint_*"),  # a sequential study's looks
        *storage.glob(f"{tune_name}-*/checkpoint_*"),
    ]
    freed = 0
    for folder in folders:
        freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
    return freed
