"""Run one study's sweep with Ray Tune and record it in MLflow: resolve it, open its parent run, tune, export.

Sweeps are resumable: the Tune experiment folder and the MLflow parent run are named by a hash of everything that
defines the sweep (`sweep_id`), so re-running the same command after a crash restores the sweep (`Tuner.restore`):
finished trials are kept and unfinished ones continue from their checkpoints.

A trial is computed once: a trial that an earlier sweep of the study trained to its end (the same
`pipeline.trial.trial_identity`) is not trained again. Its run, looked up in one search before the sweep starts, moves
under this sweep's parent run (`pipeline.tune.trainable`); `sweep.json` counts the trials reused and trained.

A sweep ends early, resumably, on SIGINT or SIGTERM and when its MLflow tracking store or Ray runtime stops
answering (`SweepGuard`): reachable runs are closed KILLED, no results are written, and the stage exits non-zero
with one line. A completed sweep keeps no checkpoints (`drop_checkpoints`): what is kept of a trial is in MLflow.
How each part works is in `pipeline.tune`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import tracking
from pipeline.codegraph import code_fingerprint
from pipeline.config import Study
from pipeline.data import Splits, load_prepared
from pipeline.paths import project_root
from pipeline.trial import Runtime
from pipeline.tune.callback import running
from pipeline.tune.guard import StopSweep, SweepGuard, close_reachable_runs, sweep_services
from pipeline.tune.ray_workarounds import explain_restore_failure
from pipeline.tune.resume import drop_checkpoints, is_completed, mark_completed
from pipeline.tune.tuner import build_tuner, init_ray

RETRAIN_ENV = "PIPELINE_RETRAIN"  # =1: train every trial of the sweep, reuse none (`pipeline run STUDY --retrain`)
TRIAL_MODULE = "pipeline.tune.trainable"  # what a trial runs: its code fingerprint covers this module's closure


# A sequential study's next look (`pipeline.report.build.look_decider`, passed in by the study stage): runs so far and
# the sweep's MLflow ids -> (the look to make, 0-based; the seeds per variant it needs, or None once settled)
Decide = Callable[[list[dict[str, Any]], dict[str, Any]], tuple[int, "dict[str, int] | None"]]


def run_study(
    study: Study, data_dir: str | Path, out_dir: str | Path, retrain: bool = False, decide: Decide | None = None
) -> dict[str, Any]:
    """Run (or resume) the study's sweep; write `<out>/runs.json` and `<out>/sweep.json`.

    A study with sequential seeds (`seeds: {min, max}`) runs its looks in this one sweep: `decide` says after each
    which seeds the next needs, and each look is one round of Tune that trains only those.

    A trial already trained to its end by an earlier sweep of the study (the same `trial_identity`: config, seed,
    workers, data, code and versions) is reused, not trained again, unless `retrain`.

    Raises SweepInterrupted (a SystemExit) if the sweep stopped early: on SIGINT or SIGTERM, when its tracking store
    or Ray runtime stopped answering, or when Tune returned with trials unfinished."""
    params = study.params
    sw = _resolve_sweep(study, data_dir)
    resources = init_ray(params)
    with SweepGuard(study.name, sweep_services(sw.uri)) as guard:
        # A driver that died (or lost its tracking server) left its trials' runs RUNNING: none of them runs now.
        stale = tracking.close_sweep_runs(sw.uri, sw.experiment_id, sw.sid, "KILLED", "stale_driver")
        if stale:
            print(f"[{study.name}] closed {stale} runs left RUNNING by an earlier run of this sweep", file=sys.stderr)
        parent_id, resume = _open_parent_run(sw)
        guard.close_runs = functools.partial(close_reachable_runs, sw.uri, sw.experiment_id, parent_id)
        try:
            summary = _sweep(sw, parent_id, resume, resources, out_dir, guard, retrain, decide)
        except StopSweep as stop:
            guard.end_early(stop)
        except BaseException:
            lost = guard.lost_now()
            if lost is not None:  # the failure is the lost service's: one line, not its traceback
                guard.end_early(lost)
            tracking.close_unfinished(sw.uri, sw.experiment_id, parent_id, "KILLED", "driver_interrupted")
            tracking.client(sw.uri).set_terminated(parent_id, status="KILLED")
            raise
    drop_checkpoints(sw.storage, sw.tune_name)
    return summary


@dataclass(frozen=True)
class _Sweep:
    """Where one study's sweep lives: its data, MLflow experiment, id and Tune folder."""

    study: Study
    data: Splits
    root: Path
    uri: str
    experiment_id: str
    sid: str
    storage: Path
    tune_name: str  # the Tune experiment's name and folder under `storage`
    data_dir: Path

    @functools.cached_property
    def provenance(self) -> dict[str, str]:
        """MLflow's source tags and the DVC stage and data hash, for the parent run and every trial's run (read once:
        git and dvc.lock)."""
        entry = Path(sys.argv[0]).resolve()
        entry_name = entry.relative_to(self.root).as_posix() if entry.is_relative_to(self.root) else entry.name
        return {
            **tracking.source_tags(self.root, entry_name),
            **tracking.dvc_tags(f"study@{self.study.name}", self.data_dir, self.root),
        }

    @property
    def tune_dir(self) -> Path:
        return self.storage / self.tune_name


def _resolve_sweep(study: Study, data_dir: str | Path) -> _Sweep:
    """Load the prepared data and name everything the sweep writes (creates the MLflow experiment if new)."""
    params = study.params
    root = project_root()
    data = load_prepared(
        data_dir, study.spec.dataset["name"], {k: v for k, v in study.spec.dataset.items() if k != "name"}
    )
    uri = tracking.resolve_tracking_uri(params.mlflow.tracking_uri, root)
    experiment_id = tracking.ensure_experiment(uri, study.name, root)
    sid = sweep_id(study, data)
    storage = Path(params.ray.storage_path)
    storage = storage if storage.is_absolute() or "://" in str(storage) else root / storage
    return _Sweep(study, data, root, uri, experiment_id, sid, storage, f"{study.name}-{sid}", Path(data_dir))


def sweep_id(study: Study, data: Splits) -> str:
    """Hash of what defines a sweep: the resolved spec, its seeds, and the data's checksum."""
    blob = json.dumps(
        {
            "spec": study.spec.model_dump(),
            "seeds": study.seeds,
            "data": data.meta.get("sha256"),
            "ray": study.params.ray.workers_per_trial,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _open_parent_run(sw: _Sweep) -> tuple[str, bool]:
    """(parent run id, resume?): resume a crashed sweep with the same definition; start over if the last one
    completed (its Tune folder is deleted, and a new parent run opened)."""
    study, params = sw.study, sw.study.params
    parents = tracking.find_runs(sw.uri, sw.experiment_id, f"tags.sweep_id = '{sw.sid}' and tags.sweep_parent = 'true'")
    unfinished = [r for r in parents if tracking.status_name(r) != "FINISHED"]
    resume = bool(unfinished) and sw.tune_dir.exists() and not is_completed(sw.tune_dir)
    if not resume and sw.tune_dir.exists():
        shutil.rmtree(sw.tune_dir)
    c = tracking.client(sw.uri)
    if resume:
        parent_id = unfinished[0].info.run_id
        c.update_run(parent_id, status="RUNNING")
        return parent_id, resume
    parent_id = c.create_run(
        sw.experiment_id,
        run_name=f"{study.name}-sweep-{sw.sid}",
        tags={
            "sweep_parent": "true",
            "sweep_id": sw.sid,
            "study": study.name,
            "profile": params.profile,
            "question": study.spec.question,
            **sw.provenance,
        },
    ).info.run_id
    tracking.log_params(
        sw.uri,
        parent_id,
        {"spec": study.spec.model_dump(exclude={"profiles"}), "seeds": study.seeds, "profile": params.profile},
    )
    return parent_id, resume


def _sweep(
    sw: _Sweep,
    parent_id: str,
    resume: bool,
    resources: dict[str, float],
    out_dir: str | Path,
    guard: SweepGuard,
    retrain: bool,
    decide: Decide | None,
) -> dict[str, Any]:
    """Fit the Tuner (once per look), then (if every trial ended) export the runs and write the results and the
    completed marker."""
    study = sw.study
    runtime = _runtime(sw, parent_id)
    # One search for the whole sweep: every finished trial of the study, by identity. With `retrain` only this
    # sweep's own finished trials count (a resumed sweep does not train again what it already trained).
    runtime.reusable = tracking.finished_trials(sw.uri, sw.experiment_id, parent_id if retrain else None)
    t0 = time.time()
    if decide is None:
        results = _fit(sw, runtime, resources, guard, sw.tune_dir, resume)
        looks = 1
    else:
        results, looks = _looks(sw, parent_id, runtime, resources, guard, decide)
    closed = tracking.close_unfinished(sw.uri, sw.experiment_id, parent_id, "FAILED", "left_running")
    errors = _print_trial_errors(study.name, results)
    runs = tracking.export_runs(sw.uri, sw.experiment_id, parent_id)
    reused = sum(r["tags"].get("trained_under", parent_id) != parent_id for r in runs)
    trained = len(runs) - reused
    tracking.set_tags(sw.uri, parent_id, {"trials_reused": reused, "trials_trained": trained})
    if reused:
        print(f"[{study.name}] {reused} of {len(runs)} trials reused from earlier sweeps, not trained", file=sys.stderr)
    for r in runs:
        if r["tags"].get("trained_under") == parent_id and "not_reused" in r["tags"]:
            name = f"{r['tags'].get('variant')} seed {r['tags'].get('seed')}"
            print(f"[{study.name}] {name} trained again instead of reusing {r['tags']['not_reused']}", file=sys.stderr)
    summary = {
        "study": study.name,
        "sweep_id": sw.sid,
        "experiment_id": sw.experiment_id,
        "parent_run_id": parent_id,
        "tracking_uri": sw.uri,
        "profile": study.params.profile,
        "question": study.spec.question,
        "metric": study.spec.metric,
        "mode": study.spec.mode,
        # the seeds the runs have (a sequential study's looks may stop short of its max)
        "seeds": sorted({int(r["tags"]["seed"]) for r in runs if "seed" in r["tags"]}) if decide else study.seeds,
        "trials": len(results),
        "looks": looks,
        "trials_reused": reused,
        "trials_trained": trained,
        "errors": len(errors),
        "closed_left_running": closed,
        "wall_seconds": round(time.time() - t0, 2),
        "resumed": resume,
    }
    guard.check_finished(sw.tune_dir)  # a signal during the export: nothing written yet
    _write_results(sw, parent_id, out_dir, runs, summary, failed=bool(errors))
    return summary


def _fit(
    sw: _Sweep,
    runtime: Runtime,
    resources: dict[str, float],
    guard: SweepGuard,
    tune_dir: Path,
    resume: bool,
    trials: list[tuple[dict[str, Any], int]] | None = None,
) -> list[Any]:
    """One round of Tune in `tune_dir`: the study's whole grid, or the given (point, seed) trials."""
    tuner = build_tuner(runtime, sw.data, resources, tune_dir, resume, trials)
    with running(guard, runtime), explain_restore_failure(sw.study.name):
        results = tuner.fit()
    guard.check_finished(tune_dir)
    return list(results)


def _looks(
    sw: _Sweep, parent_id: str, runtime: Runtime, resources: dict[str, float], guard: SweepGuard, decide: Decide
) -> tuple[list[Any], int]:
    """A sequential study's looks, each a round of Tune (`<tune dir>/look-<k>`) over the trials the next look needs
    that no run of this sweep has yet; a look Ctrl-C stopped is restored from its folder. (results, looks made)."""
    study, base = sw.study, sw.study.params.seed
    ids = {"tracking_uri": sw.uri, "experiment_id": sw.experiment_id, "parent_run_id": parent_id, "study": study.name}
    results: list[Any] = []
    while True:
        runs = tracking.export_runs(sw.uri, sw.experiment_id, parent_id)
        look, wanted = decide(runs, ids)
        if wanted is None:
            return results, look
        have = {(r["tags"].get("variant"), int(r["tags"].get("seed", -1))) for r in runs}
        trials = [
            (point, seed)
            for point in study.points()
            for seed in range(base, base + wanted[study.variant(point)])
            if (study.variant(point), seed) not in have
        ]
        added = ", ".join(f"{v} to {n}" for v, n in wanted.items() if n > min(wanted.values())) or "every variant"
        print(f"[{study.name}] look {look + 1}: {len(trials)} trials ({added} seeds)", file=sys.stderr)
        look_dir = sw.tune_dir / f"look-{look + 1}"
        results += _fit(sw, runtime, resources, guard, look_dir, look_dir.exists(), trials)


def _runtime(sw: _Sweep, parent_id: str) -> Runtime:
    """What every trial shares; the study's own resources override the `ray` defaults in params."""
    study, ray_cfg = sw.study, sw.study.params.ray
    res = study.spec.resources
    return Runtime(
        study=study,
        tracking_uri=sw.uri,
        experiment_id=sw.experiment_id,
        parent_run_id=parent_id,
        sweep_id=sw.sid,
        space_keys=list(study.spec.search.space),
        workers_per_trial=res.workers_per_trial or ray_cfg.workers_per_trial,
        cpus_per_worker=res.cpus_per_worker or ray_cfg.cpus_per_worker,
        gpus_per_worker=res.gpus_per_worker if res.gpus_per_worker is not None else ray_cfg.gpus_per_worker,
        storage_path=str(sw.storage),
        max_failures=ray_cfg.max_failures,
        tags={
            **sw.provenance,
            **tracking.package_versions(),
            "data_sha256": sw.data.meta.get("sha256", ""),
        },
        data_source=sw.data.meta.get("path", ""),
        code_sha=code_fingerprint(TRIAL_MODULE),
    )


def _print_trial_errors(study_name: str, results: Any) -> list[Any]:
    """The failed trials' results, each announced on stderr by the last line of its traceback."""
    errors = [r for r in results if r.error is not None]
    for r in errors:
        # The last line of the trial's traceback names the exception; the whole one is in <trial dir>/error.txt.
        text = str(r.error).strip()
        last = text.splitlines()[-1] if text else type(r.error).__name__
        print(f"[{study_name}] trial {r.path}: {last}", file=sys.stderr)
    return errors


def _write_results(
    sw: _Sweep, parent_id: str, out_dir: str | Path, runs: Any, summary: dict[str, Any], failed: bool
) -> None:
    """Write `runs.json` and `sweep.json`, mark the Tune folder completed, then close the parent run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    (out / "sweep.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    mark_completed(sw.tune_dir, parent_id)  # last: only a sweep whose outputs exist counts as completed
    tracking.client(sw.uri).set_terminated(parent_id, status="FAILED" if failed else "FINISHED")
