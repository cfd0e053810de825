"""One trial: build the model, train it with `fit`, and record it in MLflow (rank 0 only).

`run_worker` is the same for a plain Tune function trial and for each rank of a DDP trial under Ray
Train; only the `report` and `get_checkpoint` functions handed to it differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import tracking
from pipeline.build import untrained
from pipeline.config import Study, TrialConfig
from pipeline.data import Splits
from pipeline.diagnostics import count_parameters, flops_per_sample
from pipeline.train import FitResult, evaluate, fit, rank_and_world

CHECKPOINT_FILE = "state.pt"


@dataclass
class Runtime:
    """What every trial of a sweep shares; passed once through Ray's object store."""

    study: Study
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    sweep_id: str
    space_keys: list[str]
    workers_per_trial: int = 1
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    storage_path: str = ""
    max_failures: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    data_source: str = ""  # the prepared data file the trials read (recorded as the runs' dataset input)
    code_sha: str = ""  # fingerprint of the code a trial runs (pipeline.codegraph), part of every trial's identity
    # trial identity -> the finished run (of an earlier sweep, or of this one) that has it: reused, not trained
    reusable: dict[str, str] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.study.spec.metric

    @property
    def mode(self) -> str:
        return self.study.spec.mode


LISTED = "trial"  # the Tune config key of a listed trial's {point..., seed} (a sequential study's look)


def trial_config(runtime: Runtime, config: dict[str, Any]) -> tuple[TrialConfig, str, dict[str, Any]]:
    """(resolved config, variant label, point of the space) of one Tune config."""
    config = {**config, **config.get(LISTED, {})}
    point = {k: config[k] for k in runtime.space_keys if k in config}
    if "seed" in config:
        seed = int(config["seed"])
    else:  # Repeater (optuna with several seeds) numbers the repeats of one configuration
        seed = runtime.study.seeds[int(config.get("__trial_index__", 0))]
    return runtime.study.resolve(point, seed), runtime.study.variant(point), point


def save_checkpoint(state: dict[str, Any], folder: str) -> None:
    torch.save(state, Path(folder) / CHECKPOINT_FILE)


def load_checkpoint(folder: str) -> dict[str, Any]:
    return torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)


def fill_history_gaps(uri: str, run_id: str, history: list[dict[str, float]]) -> int:
    """Log (synchronously) each epoch of a checkpoint's `history` that the MLflow run lacks; returns how many.
    Epoch metrics go out asynchronously, so a process that dies or is stopped may take its last epochs with it."""
    logged = {m.step for m in tracking.client(uri).get_metric_history(run_id, "epoch")}
    missing = [row for row in history if int(row["epoch"]) not in logged]
    for row in missing:
        tracking.log_metrics(uri, run_id, row, step=int(row["epoch"]), synchronous=True)
    return len(missing)


def epochs_to_target(history: list[dict[str, float]], metric: str, value: float, mode: str) -> float | None:
    for row in history:
        v = row.get(metric)
        if v is not None and (v >= value if mode == "max" else v <= value):
            return row["epoch"]
    return None


def trial_key(runtime: Runtime, cfg: TrialConfig, trial_id: str) -> str:
    """What names a trial's MLflow run within its sweep's parent run (its `trial_key` tag).

    In a grid sweep, the trial's resolved configuration (its point of the grid and its seed): the same trial has
    the same key whatever Tune calls it, so a sweep whose Tune state could not be restored, and that Tune therefore
    starts over with new trial ids, still finds the runs its finished trials closed and the runs its unfinished
    ones began. A sampled search may suggest one point twice, so there each Tune trial keeps its own run."""
    if runtime.study.spec.search.algorithm != "grid":
        return trial_id
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Training fields that cannot change a trial's weights, so not part of its identity: changing them reuses the trial
# (tests/test_trial_cache.py trains with each changed and compares every per-epoch metric). Per-layer diagnostics are
# measurements taken beside the step; checkpoints copy the state. The study's question, claims, report options and Ray
# concurrency are not in the trial's config at all.
NOT_IDENTITY = {"study": True, "train": {"diagnostics": True, "checkpoint_every": True}}
IDENTITY_VERSIONS = ("torch", "numpy")  # the libraries whose numerics a trial's weights depend on


def trial_identity(runtime: Runtime, cfg: TrialConfig) -> str:
    """Everything that decides a trial's trained weights, hashed: its resolved config (model, data set, training)
    and seed, its number of DDP workers, the prepared data's digest, the code it runs and the torch and numpy
    versions. A finished run with the same identity is the same trial: a sweep reuses it instead of training."""
    blob = {
        "config": cfg.model_dump(mode="json", exclude=NOT_IDENTITY),
        "workers": runtime.workers_per_trial,
        "data": runtime.tags.get("data_sha256", ""),
        "code": runtime.code_sha,
        "versions": {pkg: runtime.tags.get(f"version.{pkg}", "") for pkg in IDENTITY_VERSIONS},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def trial_name(study: str, variant: str, seed: int) -> str:
    """A trial's run name: `activations-relu-s0`, `depth_capacity-hidden=[64],lr=0.1-s1`."""
    return f"{study}-{variant}-s{seed}"


def model_name(study: str, variant: str, seed: int) -> str:
    """A trial's logged model's name: its run's, where MLflow refuses `.`, `/`, `:`, `%` and quotes in a model's
    name (`lr=0.1` becomes `lr=0_1`; the model's `variant` tag keeps the label as it is)."""
    return re.sub(r"[./:%\"']", "_", trial_name(study, variant, seed))


def run_worker(
    cfg: TrialConfig,
    variant: str,
    runtime: Runtime,
    data: Splits,
    trial_id: str,
    report: Callable[[dict[str, float], str | None], None],
    get_checkpoint: Callable[[], str | None],
    device: torch.device,
    tags: dict[str, str] | None = None,
) -> FitResult:
    """Train one trial on this process (one rank, or the only process). `tags` go on its MLflow run."""
    rank, world = rank_and_world()
    torch.set_num_threads(max(1, int(runtime.cpus_per_worker)))  # Ray sets OMP_NUM_THREADS=1 in workers
    model, task = untrained(cfg, data.info, device)
    metric = runtime.metric

    run_id = None
    if rank == 0:
        run_id = tracking.start_or_resume_run(
            runtime.tracking_uri,
            runtime.experiment_id,
            run_name=trial_name(runtime.study.name, variant, cfg.seed),
            tags={
                **runtime.tags,
                **tracking.machine_tags(device),  # the CPU, its instruction set and the torch build that trained it
                "mlflow.parentRunId": runtime.parent_run_id,
                "study": runtime.study.name,
                "family": cfg.model.name,
                "dataset": cfg.dataset.name,
                "variant": variant,
                "seed": str(cfg.seed),
                "workers": str(world),
                "ray_trial_id": trial_id,  # Tune's name for the latest attempt
                "trial_identity": trial_identity(runtime, cfg),  # what later sweeps reuse it by
                "trained_under": runtime.parent_run_id,  # its first sweep run; `mlflow.parentRunId` is its latest
                **(tags or {}),
            },
            # One run per trial of this run of the sweep: a resumed sweep keeps its parent run. A completed sweep run
            # again gets a new parent; its trials reuse earlier runs by identity (tune.trainable), and those that
            # still train get new runs.
            match={
                "trial_key": trial_key(runtime, cfg, trial_id),
                "sweep_id": runtime.sweep_id,
                "mlflow.parentRunId": runtime.parent_run_id,
            },
        )
        # A run closed when its sweep stopped early (driver_interrupted, service_lost, stale_driver) runs again.
        tracking.delete_tag_if_set(runtime.tracking_uri, run_id, "end_reason")
        tracking.log_params(runtime.tracking_uri, run_id, cfg.model_dump())
        tracking.log_dataset(
            runtime.tracking_uri, run_id, cfg.dataset.name, data.meta.get("sha256", ""), runtime.data_source
        )
        tracking.log_metrics(
            runtime.tracking_uri,
            run_id,
            {
                "n_params": count_parameters(model),
                "flops_per_sample": flops_per_sample(model, data.x_val[:1].to(device)),
            },
            step=0,
        )

    resume = None
    ckpt_dir = get_checkpoint()
    if ckpt_dir:
        resume = load_checkpoint(ckpt_dir)
        if rank == 0:
            # Metrics are logged asynchronously, so a killed attempt may have lost the last epochs before
            # its checkpoint; the checkpoint's own history fills exactly those gaps.
            fill_history_gaps(runtime.tracking_uri, run_id, resume.get("history", []))

    def on_epoch(metrics: dict[str, float], checkpoint: Callable[[], dict[str, Any]]) -> None:
        epoch = int(metrics["epoch"])
        if rank == 0:
            tracking.log_metrics(runtime.tracking_uri, run_id, metrics, step=epoch)
            # A task may log pictures each epoch (a generative model's sample grid): a hook on the task,
            # so `fit` stays free of plotting and other tasks pay nothing.
            if hasattr(task, "epoch_artifacts"):
                _log_epoch_artifacts(runtime.tracking_uri, run_id, task, model, epoch)
        every = cfg.train.checkpoint_every
        want = every and (epoch % every == 0 or epoch == cfg.train.epochs)
        # Tune sees only rank 0's report; the metrics are already reduced over ranks, so they agree.
        if want and rank == 0:
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint(checkpoint(), d)
                report(_tune_metrics(metrics), d)
        else:
            report(_tune_metrics(metrics), None)

    try:
        result = fit(
            model, data, task, cfg.train, on_epoch, seed=cfg.seed, metric=metric, mode=runtime.mode, resume=resume
        )
    except BaseException:
        # Tune stops a trial (ASHA) by raising SystemExit at its next report, so the run never reaches end_run:
        # write out the epochs MLflow's asynchronous logger still holds before the actor is reused or torn down.
        if rank == 0:
            tracking.flush(runtime.tracking_uri)
        raise

    # Final evaluation of the best epoch's weights on the test split (every rank takes part).
    best = result.best_state
    if world > 1:
        best = _broadcast_state(best, model, device)
    test: dict[str, float] = {}
    if best is not None:
        model.load_state_dict(best)
        test = evaluate(model, data.x_test, data.y_test, task, cfg.train.eval_batch_size, prefix="test")
    if rank == 0:
        correct = per_example_correct(model, data, task, cfg.train.eval_batch_size) if best is not None else None
        _finish_run(runtime, cfg, variant, run_id, result, test, best, model, data.x_val[:2], correct)
    return result


@torch.no_grad()
def per_example_correct(model: torch.nn.Module, data: Splits, task, batch_size: int) -> torch.Tensor | None:
    """1 where the best checkpoint classifies a test example right, else 0; None for tasks that are not
    single-label classification (sequences, generative models, regression)."""
    from pipeline.tasks import Binary, Classification

    if not isinstance(task, Classification | Binary) or data.y_test.ndim != 1 or not len(data.x_test):
        return None
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits = []
    for i in range(0, len(data.x_test), batch_size):
        out = model(data.x_test[i : i + batch_size].to(device))
        if not isinstance(out, torch.Tensor):
            return None
        y = data.y_test[i : i + batch_size].to(device)
        pred = (out.view(-1) > 0).long() if isinstance(task, Binary) else out.argmax(dim=-1)
        hits.append((pred == y.view(-1).long()).cpu())
    model.train(was_training)
    return torch.cat(hits)


def _log_epoch_artifacts(uri: str, run_id: str, task, model: torch.nn.Module, epoch: int) -> None:
    """Log the files `task.epoch_artifacts(model, epoch, folder)` writes, under the run's `epochs/` folder."""
    with tempfile.TemporaryDirectory() as d:
        for path in task.epoch_artifacts(model, epoch, Path(d)):
            tracking.client(uri).log_artifact(run_id, str(path), artifact_path="epochs")


def _tune_metrics(metrics: dict[str, float]) -> dict[str, float]:
    # Tune gets the headline numbers; the per-layer diagnostics go to MLflow only.
    return {k: v for k, v in metrics.items() if "/" not in k}


def _broadcast_state(state, model, device):
    import torch.distributed as dist

    holder = [state]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def _finish_run(
    runtime: Runtime,
    cfg: TrialConfig,
    variant: str,
    run_id: str,
    result: FitResult,
    test: dict[str, float],
    best: dict[str, torch.Tensor] | None,
    model: torch.nn.Module,
    example: torch.Tensor,
    correct: torch.Tensor | None = None,
) -> None:
    import yaml

    from pipeline.plots import learning_curve

    uri = runtime.tracking_uri
    final = dict(test)
    if result.best_metric is not None:
        final[f"best_{runtime.metric}"] = result.best_metric
        final["best_epoch"] = float(result.best_epoch or 0)
    target = runtime.study.spec.target
    if target is not None:
        reached = epochs_to_target(result.history, target.metric, target.value, runtime.mode)
        # Not reached: recorded as epochs + 1 so means stay finite; the tag says it was not reached.
        final["epochs_to_target"] = float(reached if reached is not None else cfg.train.epochs + 1)
        tracking.set_tags(uri, run_id, {"target_reached": str(reached is not None).lower()})
    if final:
        tracking.log_metrics(
            uri,
            run_id,
            {k: v for k, v in final.items() if math.isfinite(v)},
            step=len(result.history),
            synchronous=True,
        )
    outcome = "diverged" if result.diverged else "completed"
    # `artifacts`: the files below that later readers need (the report, `pipeline.rerun`); a sweep that would reuse
    # this run checks they are still there (tracking.missing_artifacts).
    needed = ["config.yaml", *(["test_correct.npy"] if correct is not None else [])]
    tracking.set_tags(uri, run_id, {"outcome": outcome, "artifacts": ",".join(needed)})
    c = tracking.client(uri)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        c.log_artifact(run_id, str(Path(d) / "config.yaml"))
        if correct is not None:  # the report resamples seeds and test examples with it: P(A > B)
            np.save(Path(d) / "test_correct.npy", correct.numpy().astype(np.uint8))
            c.log_artifact(run_id, str(Path(d) / "test_correct.npy"))
        if best is not None:  # `model` holds the best epoch's weights now (loaded for the test evaluation)
            model_id = tracking.log_model(
                uri,
                run_id,
                model,
                example,
                runtime.experiment_id,
                name=model_name(runtime.study.name, variant, cfg.seed),
                tags={
                    **{k: v for k, v in runtime.tags.items() if k.startswith("mlflow.source.")},
                    "study": runtime.study.name,
                    "variant": variant,
                    "seed": str(cfg.seed),
                },
            )
            tracking.set_tags(uri, run_id, {"best_model_id": model_id})
        if result.history:
            png = Path(d) / "learning_curve.png"
            learning_curve(result.history, png, title=f"{cfg.study}: {cfg.model.name} seed {cfg.seed}")
            c.log_artifact(run_id, str(png))
    tracking.end_run(uri, run_id, "FINISHED")
