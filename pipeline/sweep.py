"""Run one study's sweep with Ray Tune and record it in MLflow.

A trial is a Tune *function*. With `workers_per_trial: 1` it trains in its own process; with N > 1 it
builds and fits a Ray Train `TorchTrainer` (N DDP ranks, gloo on CPU, NCCL on GPU) and Train's
`TuneReportCallback` forwards rank 0's (already all-reduced) metrics to Tune.

Sweeps are resumable: the Tune experiment folder and the MLflow parent run are named by a hash of
everything that defines the sweep, so re-running the same command after a crash restores the sweep
(`Tuner.restore`): finished trials are kept and unfinished ones continue from their checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pipeline import tracking
from pipeline.config import Params, Study
from pipeline.data import Splits, load_prepared
from pipeline.paths import project_root
from pipeline.progress import TrialProgress
from pipeline.ray_session import start_local_runtime
from pipeline.trial import CHECKPOINT_FILE, Runtime, fill_history_gaps, load_checkpoint, run_worker, trial_config

COMPLETED_MARKER = "SWEEP_COMPLETED"


# --------------------------------------------------------------------------- trial functions (run in Ray)


def _quiet_checkpoint_logs() -> None:
    """Ray logs INFO lines per saved checkpoint and per report, i.e. per trial and epoch: noise in a study's log."""
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:  # Ray Train V2 also logs every report of every rank, under its module's file path
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass


def tune_trial(config: dict[str, Any], runtime: Runtime, data: Splits) -> None:
    """A Tune function trial."""
    from ray import tune

    _quiet_checkpoint_logs()

    trial_id = tune.get_context().get_trial_id()
    cfg, variant, _ = trial_config(runtime, config)
    done = tracking.completed_run(runtime.tracking_uri, runtime.experiment_id, trial_id, runtime.sweep_id)
    if done is not None:
        # The driver died after this trial closed its run but before Tune saved that: keep the run as it is.
        tune.report({k: v for k, v in done.data.metrics.items() if "/" not in k})
        return
    if runtime.workers_per_trial > 1:
        _fit_ddp(config, runtime, data, trial_id)
        return

    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    def get_checkpoint() -> str | None:
        ckpt = tune.get_checkpoint()
        return _readable_checkpoint(ckpt.path, lambda: ckpt.to_directory()) if ckpt else None

    use_gpu = runtime.gpus_per_worker > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    run_worker(cfg, variant, runtime, data, trial_id, report, get_checkpoint, device, _placement_tags())


def repair_missing_checkpoints(tune_dir: Path) -> list[str]:
    """Before `Tuner.restore`: give every unfinished trial the checkpoint Tune's saved state names.

    Tune deletes a trial's old checkpoints (`CheckpointConfig.num_to_keep`) before it snapshots its state, so a
    driver killed in between leaves a state naming a deleted checkpoint, and Tune refuses to restore that
    trial ("Could not recover from checkpoint as it does not exist"). The newest readable checkpoint of the same
    trial is copied under the missing name; the trial then resumes from the epoch recorded in it."""
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    if not states:
        return []
    repaired = []
    for trial_json, runtime_json in json.loads(states[-1].read_text()).get("trial_data", []):
        trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        runtime = json.loads(runtime_json) if isinstance(runtime_json, str) else runtime_json
        name = (runtime.get("last_result") or {}).get("checkpoint_dir_name")
        logdir = trial.get("relative_logdir")
        if trial.get("status") == "TERMINATED" or not name or not logdir:
            continue
        wanted = tune_dir / logdir / name
        if wanted.exists():
            continue
        other = _newest_readable_checkpoint(wanted.parent)
        if other is not None:
            shutil.copytree(other, wanted)
            repaired.append(f"{logdir}: checkpoint {name} was deleted before Tune saved its state; using {other.name}")
    return repaired


def _newest_readable_checkpoint(trial_dir: Path) -> Path | None:
    """The trial's newest `checkpoint_*` folder whose state loads; None if it has none."""
    for folder in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        try:
            load_checkpoint(str(folder))
        except Exception:  # noqa: BLE001 - an unreadable one is no replacement
            continue
        return folder
    return None


def _readable_checkpoint(path: str, fetch: Any) -> str | None:
    """`fetch()` the checkpoint Tune restores a trial from; if it cannot be fetched or read (a state file cut
    short, say), the newest readable one beside it. A deleted one is recreated before the restore (see
    repair_missing_checkpoints): Tune refuses a missing checkpoint before the trial function runs."""
    try:
        folder = fetch()
        load_checkpoint(folder)
        return folder
    except Exception as e:  # noqa: BLE001 - any failure to read it means: look for another
        reason = f"{type(e).__name__}: {e}"
    here = Path(path)
    other = _newest_readable_checkpoint(here.parent)
    if other is not None:
        print(f"checkpoint {here.name} unreadable ({reason}); resuming from {other.name}", file=sys.stderr)
        return str(other)
    print(f"checkpoint {here.name} unreadable ({reason}) and no other found; training from epoch 1", file=sys.stderr)
    return None


def _fit_ddp(config: dict[str, Any], runtime: Runtime, data: Splits, trial_id: str) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = runtime.gpus_per_worker > 0
    resources = {"CPU": runtime.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = runtime.gpus_per_worker
    trainer = TorchTrainer(
        ddp_worker,
        train_loop_config={"config": config, "runtime": runtime, "data": data, "trial_id": trial_id},
        scaling_config=ray.train.ScalingConfig(
            num_workers=runtime.workers_per_trial, use_gpu=use_gpu, resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            # Deterministic name: a retried or restored trial finds its own Train checkpoints.
            name=f"{runtime.study.name}-{runtime.sweep_id}-{trial_id}",
            storage_path=runtime.storage_path,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=runtime.max_failures),
        ),
    )
    trainer.fit()


def ddp_worker(loop_config: dict[str, Any]) -> None:
    """One rank of a DDP trial (runs inside a Ray Train worker)."""
    import ray.train
    import ray.train.torch

    _quiet_checkpoint_logs()
    runtime: Runtime = loop_config["runtime"]
    cfg, variant, _ = trial_config(runtime, loop_config["config"])

    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    def get_checkpoint() -> str | None:
        ckpt = ray.train.get_checkpoint()
        return ckpt.to_directory() if ckpt else None

    device = ray.train.torch.get_device()
    run_worker(
        cfg,
        variant,
        runtime,
        loop_config["data"],
        loop_config["trial_id"],
        report,
        get_checkpoint,
        device,
        _placement_tags(),
    )


def _placement_tags() -> dict[str, str]:
    """Where rank 0 ran: on a cluster the MLflow run says which node (nodes may share an IP)."""
    import socket

    import ray

    return {
        "ray_node_id": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }


# --------------------------------------------------------------------------- the driver


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


def init_ray(params: Params) -> dict[str, float]:
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's boxed tables do not read well in a log file
    # Checkpoints every epoch with CheckpointConfig(num_to_keep) make Tune snapshot its state often, on purpose
    # (the snapshot must not point at a deleted checkpoint); its warning about that would repeat every epoch.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
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


def _param_space(study: Study) -> dict[str, Any]:
    from ray import tune

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


def _search_alg(study: Study):
    s = study.spec.search
    if s.algorithm != "optuna":
        return None, s.num_samples if s.algorithm == "random" else 1
    from ray.tune.search import ConcurrencyLimiter, Repeater  # noqa: F401
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(metric=study.spec.metric, mode=study.spec.mode, seed=study.params.seed)
    n_seeds = len(study.seeds)
    if n_seeds > 1:
        # Each suggested configuration runs once per seed; Optuna learns from the mean over seeds.
        searcher = Repeater(searcher, repeat=n_seeds, set_index=True)
    return searcher, s.num_samples * n_seeds


def _scheduler(study: Study):
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


def _checkpoint_history(trial: Any) -> list[dict[str, float]]:
    """The per-epoch history saved in a Tune trial's latest checkpoint (empty if it has none on local disk)."""
    ckpt = trial.checkpoint
    if ckpt is None or not (Path(ckpt.path) / CHECKPOINT_FILE).exists():
        return []
    return load_checkpoint(ckpt.path).get("history", [])


class _MlflowStatus:
    """Tune callback: a trial's MLflow run never stays RUNNING after Tune is done with the trial."""

    def __new__(cls, *args, **kwargs):
        from ray.tune import Callback

        class Impl(Callback):
            def __init__(self, runtime: Runtime):
                self.runtime = runtime

            def _close(self, trial, status: str, reason: str) -> None:
                rt = self.runtime
                runs = tracking.find_runs(
                    rt.tracking_uri,
                    rt.experiment_id,
                    f"tags.ray_trial_id = '{trial.trial_id}' and tags.sweep_id = '{rt.sweep_id}'"
                    " and attributes.status = 'RUNNING'",
                )
                c = tracking.client(rt.tracking_uri)
                if runs and reason == "early_stopped":
                    # A stopped trial's process may go before its asynchronous logger wrote the last epochs;
                    # the checkpoint Tune holds from its last report has the whole history.
                    history = _checkpoint_history(trial)
                    for r in runs:
                        fill_history_gaps(rt.tracking_uri, r.info.run_id, history)
                for r in runs:
                    c.set_tag(r.info.run_id, "end_reason", reason)
                    c.set_terminated(r.info.run_id, status=status)

            def on_trial_complete(self, iteration, trials, trial, **info):
                # A function trial that returns closes its own run; one still RUNNING was stopped early.
                self._close(trial, "FINISHED", "early_stopped")

            def on_trial_error(self, iteration, trials, trial, **info):
                self._close(trial, "FAILED", "error")

        return Impl(*args, **kwargs)


def run_study(study: Study, data_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) the study's sweep; write `<out>/runs.json` and `<out>/sweep.json`."""
    from ray import tune

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
    tune_name = f"{study.name}-{sid}"
    tune_dir = storage / tune_name

    # Resume a crashed sweep with the same definition; start over if the last one completed.
    parents = tracking.find_runs(uri, experiment_id, f"tags.sweep_id = '{sid}' and tags.sweep_parent = 'true'")
    unfinished = [r for r in parents if tracking.status_name(r) != "FINISHED"]
    resume = bool(unfinished) and tune_dir.exists() and not (tune_dir / COMPLETED_MARKER).exists()
    if not resume and tune_dir.exists():
        shutil.rmtree(tune_dir)
    c = tracking.client(uri)
    if resume:
        parent_id = unfinished[0].info.run_id
        c.update_run(parent_id, status="RUNNING")
    else:
        parent_id = c.create_run(
            experiment_id,
            run_name=f"{study.name}-sweep-{sid}",
            tags={
                "sweep_parent": "true",
                "sweep_id": sid,
                "study": study.name,
                "profile": params.profile,
                "question": study.spec.question,
                **tracking.git_info(root),
            },
        ).info.run_id
        tracking.log_params(
            uri,
            parent_id,
            {"spec": study.spec.model_dump(exclude={"profiles"}), "seeds": study.seeds, "profile": params.profile},
        )
    resources = init_ray(params)
    ray_cfg = params.ray
    res = study.spec.resources
    workers = res.workers_per_trial or ray_cfg.workers_per_trial
    cpus = res.cpus_per_worker or ray_cfg.cpus_per_worker
    gpus = res.gpus_per_worker if res.gpus_per_worker is not None else ray_cfg.gpus_per_worker
    runtime = Runtime(
        study=study,
        tracking_uri=uri,
        experiment_id=experiment_id,
        parent_run_id=parent_id,
        sweep_id=sid,
        space_keys=list(study.spec.search.space),
        workers_per_trial=workers,
        cpus_per_worker=cpus,
        gpus_per_worker=gpus,
        storage_path=str(storage),
        max_failures=ray_cfg.max_failures,
        tags={**tracking.git_info(root), **tracking.package_versions(), "data_sha256": data.meta.get("sha256", "")},
    )
    concurrency = max_concurrent(resources, workers, cpus, gpus, ray_cfg.max_concurrent_trials)
    if workers > 1:
        # The trial function only waits on its TorchTrainer, whose workers hold the resources.
        trial_resources: dict[str, float] = {"cpu": 0.01}  # Tune refuses an empty request
    else:
        trial_resources = {"cpu": cpus, "gpu": gpus}
    trainable = tune.with_resources(tune.with_parameters(tune_trial, runtime=runtime, data=data), trial_resources)
    search_alg, num_samples = _search_alg(study)
    run_config = tune.RunConfig(
        name=tune_name,
        storage_path=str(storage),
        callbacks=[_MlflowStatus(runtime), TrialProgress(study.name, study.spec.metric, study.spec.mode)],
        failure_config=tune.FailureConfig(max_failures=ray_cfg.max_failures if workers == 1 else 0),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=0,  # TrialProgress prints one plain line per event instead of redrawn tables
    )
    t0 = time.time()
    try:
        if resume and tune.Tuner.can_restore(str(tune_dir)):
            print(f"[{study.name}] resuming sweep {sid} from {tune_dir}", file=sys.stderr)
            for line in repair_missing_checkpoints(tune_dir):
                print(f"[{study.name}] {line}", file=sys.stderr)
            tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(study),
                tune_config=tune.TuneConfig(
                    metric=study.spec.metric,
                    mode=study.spec.mode,
                    num_samples=num_samples,
                    search_alg=search_alg,
                    scheduler=_scheduler(study),
                    max_concurrent_trials=concurrency,
                    reuse_actors=True,  # a fresh process per trial re-imports torch, ray and mlflow (~10 s)
                ),
                run_config=run_config,
            )
        results = tuner.fit()
    except BaseException:
        tracking.close_unfinished(uri, experiment_id, parent_id, "KILLED", "driver_interrupted")
        c.set_terminated(parent_id, status="KILLED")
        raise
    closed = tracking.close_unfinished(uri, experiment_id, parent_id, "FAILED", "left_running")
    errors = [r for r in results if r.error is not None]
    for r in errors:
        # The last line of the trial's traceback names the exception; the whole one is in <trial dir>/error.txt.
        text = str(r.error).strip()
        last = text.splitlines()[-1] if text else type(r.error).__name__
        print(f"[{study.name}] trial {r.path}: {last}", file=sys.stderr)
    runs = tracking.export_runs(uri, experiment_id, parent_id)
    summary = {
        "study": study.name,
        "sweep_id": sid,
        "experiment_id": experiment_id,
        "parent_run_id": parent_id,
        "tracking_uri": uri,
        "profile": params.profile,
        "question": study.spec.question,
        "metric": study.spec.metric,
        "mode": study.spec.mode,
        "seeds": study.seeds,
        "trials": len(results),
        "errors": len(errors),
        "closed_left_running": closed,
        "wall_seconds": round(time.time() - t0, 2),
        "resumed": resume,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    (out / "sweep.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (tune_dir / COMPLETED_MARKER).parent.mkdir(parents=True, exist_ok=True)
    (tune_dir / COMPLETED_MARKER).write_text(parent_id + "\n")
    c.set_terminated(parent_id, status="FAILED" if errors else "FINISHED")
    return summary
