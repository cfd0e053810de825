"""Building a study's Tuner: the Ray runtime, the param space, the search algorithm and scheduler, how many trials run
at once, the RunConfig; restored from the sweep's Tune folder when it resumes."""

from __future__ import annotations

import os
import pickle
import random
import sys
from pathlib import Path
from typing import Any

from pipeline.config import Params, Study
from pipeline.data import Splits
from pipeline.progress import TrialProgress
from pipeline.ray_session import start_local_runtime
from pipeline.trial import LISTED, Runtime
from pipeline.tune.callback import SweepCallback
from pipeline.tune.resume import why_not_restorable
from pipeline.tune.trainable import tune_trial


def init_ray(params: Params) -> dict[str, float]:
    """Join the Ray cluster (`ray.address` or RAY_ADDRESS) or start a local runtime; the cluster's resources."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's boxed tables do not read well in a log file
    # Tune logs the whole traceback of every failed trial attempt. The sweep prints a line per failure (progress),
    # the last line of each failed trial's error at the end, and keeps the traceback in <trial dir>/error.txt; a lost
    # tracking server or Ray node would otherwise fill the log with one traceback per trial and retry.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    if not ray.is_initialized():
        address = params.ray.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
        else:
            start_local_runtime(params, log_to_driver=True)  # clusters are joined via RAY_ADDRESS
    return ray.cluster_resources()


def max_concurrent(resources: dict[str, float], workers: int, cpus: float, gpus: float, configured: int | None) -> int:
    """How many trials fit at once on the cluster, so that trials never starve each other."""
    per_trial_cpu, per_trial_gpu = workers * cpus, workers * gpus
    fit = int(resources.get("CPU", 1) // per_trial_cpu) if per_trial_cpu else 1
    if per_trial_gpu:
        fit = min(fit, int(resources.get("GPU", 0) // per_trial_gpu))
    if fit < 1:
        raise RuntimeError(
            f"one trial needs {per_trial_cpu:g} CPUs and {per_trial_gpu:g} GPUs; "
            f"the Ray cluster has {resources.get('CPU', 0):g} and {resources.get('GPU', 0):g}"
        )
    return min(fit, configured) if configured else fit


def build_tuner(
    runtime: Runtime,
    data: Splits,
    resources: dict[str, float],
    tune_dir: Path,
    resume: bool,
    trials: list[tuple[dict[str, Any], int]] | None = None,
) -> Any:
    """The sweep's Tuner in `tune_dir` (`<storage>/<Tune experiment name>`): restored from it when resuming and
    Tune can restore it, else a new one whose trials find the runs of an earlier run by trial_key. `trials`: only
    these (point, seed) pairs (a sequential study's look), else the study's whole space."""
    from ray import tune

    study = runtime.study
    workers, cpus, gpus = runtime.workers_per_trial, runtime.cpus_per_worker, runtime.gpus_per_worker
    concurrency = max_concurrent(resources, workers, cpus, gpus, study.params.ray.max_concurrent_trials)  # or raise
    trainable = _trainable(runtime, data)
    if resume and tune.Tuner.can_restore(str(tune_dir)):
        print(f"[{study.name}] resuming sweep {runtime.sweep_id} from {tune_dir}", file=sys.stderr)
        why_not = why_not_restorable(tune_dir)
        if why_not is None:
            try:
                # The same param_space again: if Tune cannot restore its state it starts the sweep over from this
                # space (logging "Failed to restore the run state"), and the trials find their runs by trial_key.
                return tune.Tuner.restore(
                    str(tune_dir),
                    trainable,
                    param_space=param_space(study, trials),
                    resume_unfinished=True,
                    resume_errored=True,
                )
            except (pickle.UnpicklingError, AttributeError, ImportError) as e:
                # Tune unpickles the RunConfig of the sweep's first run, whose callbacks' classes may have moved since.
                why_not = f"its saved Tuner cannot be loaded: {type(e).__name__}: {e}"
        print(
            f"[{study.name}] Tune cannot restore sweep {runtime.sweep_id} ({why_not}); starting its trials again "
            "(the runs of those that finished are kept, the others train again from epoch 1)",
            file=sys.stderr,
        )
    search_alg, num_samples = _search_alg(study)
    return tune.Tuner(
        trainable,
        param_space=param_space(study, trials),
        tune_config=tune.TuneConfig(
            metric=study.spec.metric,
            mode=study.spec.mode,
            num_samples=num_samples,
            search_alg=search_alg,
            scheduler=_scheduler(study),
            max_concurrent_trials=concurrency,
            reuse_actors=True,  # a fresh process per trial re-imports torch, ray and mlflow (~10 s)
        ),
        run_config=_run_config(runtime, tune_dir),
    )


def _trainable(runtime: Runtime, data: Splits) -> Any:
    """`tune_trial` with the sweep's shared values and its per-trial resources."""
    from ray import tune

    if runtime.workers_per_trial > 1:
        # The trial function only waits on its TorchTrainer, whose workers hold the resources.
        resources: dict[str, float] = {"cpu": 0.01}  # Tune refuses an empty request
    else:
        resources = {"cpu": runtime.cpus_per_worker, "gpu": runtime.gpus_per_worker}
    return tune.with_resources(tune.with_parameters(tune_trial, runtime=runtime, data=data), resources)


def _run_config(runtime: Runtime, tune_dir: Path) -> Any:
    """Tune's RunConfig: the sweep's folder, the sweep's and progress callbacks, retries, checkpoints."""
    from ray import tune

    study = runtime.study
    return tune.RunConfig(
        name=tune_dir.name,
        storage_path=str(tune_dir.parent),
        callbacks=[SweepCallback(), TrialProgress(study.name, study.spec.metric, study.spec.mode)],
        failure_config=tune.FailureConfig(max_failures=runtime.max_failures if runtime.workers_per_trial == 1 else 0),
        # Every checkpoint stays until the sweep completes (`drop_checkpoints` then deletes them all). With
        # num_to_keep, Tune deletes a trial's old checkpoints before its saved state stops naming them, so a driver
        # killed in between left a state that Tune refused to restore ("Could not recover from checkpoint").
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        verbose=0,  # TrialProgress prints one plain line per event instead of redrawn tables
    )


def param_space(study: Study, trials: list[tuple[dict[str, Any], int]] | None = None) -> dict[str, Any]:
    from ray import tune

    if trials is not None:  # one grid over the listed trials (`pipeline.trial.trial_config` unpacks each)
        return {LISTED: tune.grid_search([{**point, "seed": seed} for point, seed in trials])}
    s = study.spec.search
    # Asynchronous ASHA judges a trial against those that reached its rung before it, so a grid written from
    # weak to strong (ascending learning rates, say) delays every stop: it saved 1.4x compute in written order
    # and 7.6x shuffled in docs/benchmarks.md. A grid under ASHA runs in an order shuffled by the base seed.
    shuffle = random.Random(study.params.seed) if s.algorithm == "grid" and s.scheduler == "asha" else None
    space: dict[str, Any] = {}
    for key in s.space:
        values = study.space_values(key)
        if shuffle:
            values = shuffle.sample(values, len(values))
        raw = s.space[key]
        kind = next(iter(raw)) if isinstance(raw, dict) else "grid"
        if s.algorithm == "grid":
            space[key] = tune.grid_search(values)
        elif kind in ("grid", "choice"):
            space[key] = tune.choice(values)
        else:
            space[key] = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](
                *values
            )
    if s.algorithm != "optuna":
        space["seed"] = tune.grid_search(study.seeds)
    return space


def _search_alg(study: Study) -> tuple[Any, int]:
    """(the search algorithm, None for Tune's own grid or random sampling; how many trials Tune samples)."""
    s = study.spec.search
    if s.algorithm != "optuna":
        return None, s.num_samples if s.algorithm == "random" else 1
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    searcher: Any = OptunaSearch(metric=study.spec.metric, mode=study.spec.mode, seed=study.params.seed)
    n_seeds = len(study.seeds)
    if n_seeds > 1:
        # Each suggested configuration runs once per seed; Optuna learns from the mean over seeds.
        searcher = Repeater(searcher, repeat=n_seeds, set_index=True)
    return searcher, s.num_samples * n_seeds


def _scheduler(study: Study) -> Any:
    s = study.spec.search
    if s.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = study.resolve({}, study.seeds[0]).train.epochs
    # max_t one past the last epoch: ASHA would otherwise stop every survivor at its final report, before
    # the trial evaluates its best checkpoint and closes its MLflow run itself.
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=epochs + 1,
        grace_period=min(s.grace_period, epochs),
        reduction_factor=s.reduction_factor,
    )
