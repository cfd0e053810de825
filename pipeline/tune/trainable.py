"""What runs inside Ray's processes: the Tune trial function, the DDP rank under Ray Train, reading a checkpoint.

A trial is a Tune *function*. With `workers_per_trial: 1` it trains in its own actor; with N > 1 it builds and fits
a Ray Train `TorchTrainer` (N DDP ranks, gloo on CPU, NCCL on GPU) and Train's `TuneReportCallback` forwards rank 0's
(already all-reduced) metrics to Tune. Nothing here imports the driver's modules: a trial actor unpickles
`tune_trial` and imports only this module and what it needs.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline import tracking
from pipeline.data import Splits
from pipeline.trial import Runtime, TrialConfig, load_checkpoint, run_worker, trial_config, trial_identity, trial_key
from pipeline.tune.ray_workarounds import quiet_report_log, quiet_sigterm


def _quiet_ray_train_logs() -> None:
    """Ray Train logs an INFO line per saved checkpoint and per report, i.e. per trial and epoch: noise in a study's
    log. `ray.train` is the library's documented logger; one line escapes it (see ray_workarounds)."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    quiet_report_log()


@quiet_sigterm
def tune_trial(config: dict[str, Any], runtime: Runtime, data: Splits) -> None:
    """A Tune function trial. Its name is part of Tune's saved state: `Tuner.restore` checks it."""
    from ray import tune

    _quiet_ray_train_logs()
    trial_id = tune.get_context().get_trial_id()
    cfg, variant, _ = trial_config(runtime, config)
    key = trial_key(runtime, cfg, trial_id)
    done = tracking.completed_run(runtime.tracking_uri, runtime.experiment_id, key, runtime.parent_run_id)
    if done is not None:
        # The driver died after this trial closed its run but before Tune saved that (or Tune could not restore
        # its saved state and started the sweep over): keep the run as it is.
        tune.report({k: v for k, v in done.data.metrics.items() if "/" not in k})
        return
    reused, why_not = _reuse(runtime, cfg)
    if reused:
        return
    tags = {"not_reused": why_not} if why_not else {}  # the driver prints it once the sweep ends
    if runtime.workers_per_trial > 1:
        _fit_ddp(config, runtime, data, trial_id, tags)
        return

    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    def get_checkpoint() -> str | None:
        ckpt = tune.get_checkpoint()
        return _readable_checkpoint(ckpt.path, ckpt.to_directory) if ckpt else None

    use_gpu = runtime.gpus_per_worker > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    run_worker(cfg, variant, runtime, data, trial_id, report, get_checkpoint, device, {**placement_tags(), **tags})


def _reuse(runtime: Runtime, cfg: TrialConfig) -> tuple[bool, str]:
    """(reused?, why an earlier run of this trial was not). An earlier sweep's run of this very trial (the same
    `trial_identity`) stands in for it: it becomes a child of this sweep's run, and Tune sees its epochs again, as if
    it trained (a scheduler like ASHA compares trials epoch by epoch). A run whose artifacts were deleted is not
    reused: the trial trains again."""
    from ray import tune

    run_id = runtime.reusable.get(trial_identity(runtime, cfg))
    if run_id is None:
        return False, ""
    uri = runtime.tracking_uri
    c = tracking.client(uri)
    run = c.get_run(run_id)
    why_not = tracking.missing_artifacts(uri, run)
    if why_not:
        return False, f"run {run_id}: {why_not}"
    tracking.adopt_run(uri, run, runtime.parent_run_id)
    metric = runtime.metric
    final = {k: v for k, v in run.data.metrics.items() if "/" not in k}
    history = c.get_metric_history(run_id, metric) if metric in final else []
    by_epoch = {m.step: m.value for m in sorted(history, key=lambda m: m.timestamp) if m.step > 0}
    for epoch in sorted(by_epoch)[:-1]:
        tune.report({metric: by_epoch[epoch], "epoch": float(epoch)})
    tune.report(final)
    return True, ""


def _fit_ddp(config: dict[str, Any], runtime: Runtime, data: Splits, trial_id: str, tags: dict[str, str]) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = runtime.gpus_per_worker > 0
    resources = {"CPU": runtime.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = runtime.gpus_per_worker
    trainer = TorchTrainer(
        ddp_worker,
        train_loop_config={"config": config, "runtime": runtime, "data": data, "trial_id": trial_id, "tags": tags},
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

    _quiet_ray_train_logs()
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
        {**placement_tags(), **loop_config["tags"]},
    )


def placement_tags() -> dict[str, str]:
    """Where rank 0 ran: on a cluster the MLflow run says which node (nodes may share an IP)."""
    import ray

    return {
        "ray_node_id": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }


def _readable_checkpoint(path: str, fetch: Callable[[], str]) -> str | None:
    """`fetch()` the checkpoint Tune restores a trial from; if it cannot be fetched or read (a state file cut
    short, say), the newest readable one beside it; None (train from epoch 1) if there is none."""
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


def _newest_readable_checkpoint(trial_dir: Path) -> Path | None:
    """The trial's newest `checkpoint_*` folder whose state loads; None if it has none."""
    for folder in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        try:
            load_checkpoint(str(folder))
        except Exception:  # noqa: BLE001 - an unreadable one is no replacement
            continue
        return folder
    return None
