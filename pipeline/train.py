"""The training loop: a plain function with no Ray in it.

`fit` runs the same on a laptop, inside a Ray Train worker, or in a test. When a torch.distributed
process group is up (DDP under Ray Train), it shards the data by rank and all-reduces every metric
before `report` sees it, so rank 0's numbers are the whole data set's numbers.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from pipeline.config import TrainConfig
from pipeline.data import Splits
from pipeline.diagnostics import Diagnostics, initial_stats, peak_memory_mb
from pipeline.tasks import Task

if TYPE_CHECKING:
    from pipeline.augment import Augment

Report = Callable[[dict[str, float], Callable[[], dict[str, Any]]], None]


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None  # CPU copy of the best epoch's weights
    diverged: bool = False


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sums(sums: dict[str, torch.Tensor], device: torch.device) -> dict[str, Any]:
    """Sum each value over ranks (a no-op in one process). Scalars come back as plain floats; a sum of any
    other shape (a generative task's pixel vectors and outer products) comes back as a CPU tensor."""
    keys = sorted(sums)
    parts = [torch.as_tensor(sums[k]).detach().float().to(device) for k in keys]
    t = torch.cat([p.reshape(-1) for p in parts])  # one all-reduce for every key, whatever their shapes
    if rank_and_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    flat, out, i = t.cpu(), {}, 0
    for k, p in zip(keys, parts):
        chunk = flat[i : i + p.numel()]
        out[k] = float(chunk[0]) if p.ndim == 0 else chunk.view(p.shape)
        i += p.numel()
    return out


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked; fp32 enters no context at all, so the default path is unchanged."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    if channels_last and x.ndim == 4:
        return x.to(device, memory_format=torch.channels_last)
    return x.to(device)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task: Task,
    batch_size: int,
    prefix: str = "val",
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, float]:
    """Metrics over the whole split. Each rank takes every world-th sample (no padding, no duplicates),
    so the all-reduced sums equal a single-process pass over the full split."""
    rank, world = rank_and_world()
    device = next(unwrap(model).parameters()).device
    was_training = model.training
    model.eval()
    idx = torch.arange(rank, len(x), world)
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, len(idx), batch_size):
        b = idx[start : start + batch_size]
        with autocast(precision, device):
            out = unwrap(model)(to_device(x[b], device, channels_last))
        if precision != "fp32":  # metric sums in fp32: a bf16 sum over a split loses digits
            out = out.float() if isinstance(out, torch.Tensor) else {k: v.float() for k, v in out.items()}
        for k, v in task.batch_sums(out, y[b].to(device)).items():
            sums[k] = sums.get(k, 0) + v
    if not sums:  # this rank got no samples: contribute zeros with the right keys
        out = unwrap(model)(x[:1].to(device))
        sums = {k: torch.zeros_like(v) for k, v in task.batch_sums(out, y[:1].to(device)).items()}
    model.train(was_training)
    return task.finalize(all_reduce_sums(sums, device), prefix)


def _schedulers(optimizers: list[torch.optim.Optimizer], cfg: TrainConfig) -> list:
    if cfg.schedule == "cosine":
        return [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=cfg.epochs) for o in optimizers]
    return []


@dataclass
class _Loop:
    """What one `fit` trains with, set up once: the model as stepped and as saved, its optimizers and helpers."""

    model: nn.Module  # what the steps run (DDP-wrapped when world > 1)
    base: nn.Module  # the plain model: state dicts, diagnostics, best weights
    optimizers: list[torch.optim.Optimizer]
    schedulers: list
    augment: Augment | None
    diagnostics: Diagnostics | None
    device: torch.device
    rank: int
    world: int


def _setup(model: nn.Module, data: Splits, task: Task, cfg: TrainConfig) -> _Loop:
    """Lay out and (under DDP) wrap the model, and build its optimizers, schedulers, augment and diagnostics."""
    from pipeline.augment import build_augment

    rank, world = rank_and_world()
    device = next(model.parameters()).device
    base = model
    if cfg.channels_last:
        base.to(memory_format=torch.channels_last)  # only 4-d weights (convs) change layout
    if world > 1:
        model = task.distribute(model, device)
    optimizers = task.optimizers(base, cfg)
    return _Loop(
        model=model,
        base=base,
        optimizers=optimizers,
        schedulers=_schedulers(optimizers, cfg),
        augment=build_augment(cfg.augment) if cfg.augment != "none" and data.x_train.ndim == 4 else None,
        diagnostics=Diagnostics(base) if cfg.diagnostics else None,
        device=device,
        rank=rank,
        world=world,
    )


def _restore(loop: _Loop, resume: dict[str, Any], result: FitResult) -> int:
    """Load a checkpoint dict (see `_checkpoint`) into the loop and `result`; returns the epoch to start from."""
    loop.base.load_state_dict(resume["model"])
    for o, s in zip(loop.optimizers, resume["optimizers"]):
        o.load_state_dict(s)
    for s, st in zip(loop.schedulers, resume.get("schedulers", [])):
        s.load_state_dict(st)
    result.history = list(resume.get("history", []))
    result.best_metric, result.best_epoch = resume.get("best_metric"), resume.get("best_epoch")
    result.best_state = resume.get("best_state")
    return resume["epoch"]


def _initial_diagnostics(
    loop: _Loop, task: Task, cfg: TrainConfig, x_train: torch.Tensor, y_train: torch.Tensor
) -> dict[str, float]:
    """Step-0 diagnostics (before any update): what an initialization study compares. Tasks without a plain loss
    (a GAN's own train_step) are skipped."""
    if not (loop.diagnostics and loop.rank == 0 and len(x_train) and type(task).loss is not Task.loss):
        return {}
    probe = x_train[: cfg.batch_size].to(loop.device), y_train[: cfg.batch_size].to(loop.device)
    return initial_stats(loop.base, *probe, task.loss)


def _train_epoch(
    loop: _Loop,
    task: Task,
    cfg: TrainConfig,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    sampler: DistributedSampler,
    epoch: int,
    seed: int,
) -> dict[str, torch.Tensor]:
    """One pass over this rank's shard of the training data; returns the per-batch stats summed, not yet reduced."""
    model, optimizers, augment, device = loop.model, loop.optimizers, loop.augment, loop.device
    model.train()
    sampler.set_epoch(epoch)
    order = torch.tensor(list(iter(sampler)), dtype=torch.long)
    # Index where the data lives: a per-batch host-to-device copy of the index would sync the GPU stream
    # every step (benchmarks/gpu_resnet.py).
    order = order.to(x_train.device)
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, len(order), cfg.batch_size):
        b = order[start : start + cfg.batch_size]
        xb = x_train[b]
        if augment is not None:
            xb = augment(xb, gen)
        # Autocast covers the whole step so every task's train_step gets it; backward and the optimizer
        # are unaffected by it (backward reuses the forward's dtypes, and optimizer ops are not autocast ops).
        with autocast(cfg.precision, device):
            step = task.train_step(
                model, to_device(xb, device, cfg.channels_last), y_train[b].to(device), optimizers, cfg
            )
        for k, v in step.items():
            # Each sum stays where its step made it (a CPU count, GPU losses); all_reduce_sums moves them once
            # per epoch. A per-step .to(device) of a CPU tensor is a blocking copy that stalls the GPU queue.
            sums[k] = sums.get(k, 0) + v.detach()
    return sums


def _epoch_metrics(
    loop: _Loop,
    data: Splits,
    task: Task,
    cfg: TrainConfig,
    epoch: int,
    train_stats: dict[str, float],
    seconds: float,
    n_train: int,
    grads: dict[str, float],
    initial: dict[str, float],
) -> dict[str, float]:
    """The epoch's reported metrics: train stats, the validation pass, speed, lr and (rank 0) diagnostics."""
    metrics: dict[str, float] = {"epoch": float(epoch + 1), **train_stats}
    metrics.update(
        evaluate(
            loop.model,
            data.x_val,
            data.y_val,
            task,
            cfg.eval_batch_size,
            precision=cfg.precision,
            channels_last=cfg.channels_last,
        )
    )
    metrics["epoch_seconds"] = seconds
    metrics["samples_per_s"] = n_train / seconds if seconds > 0 else 0.0
    metrics["lr"] = loop.optimizers[0].param_groups[0]["lr"]
    metrics["peak_memory_mb"] = peak_memory_mb(loop.device)
    if loop.diagnostics and loop.rank == 0:
        metrics.update(grads)
        metrics.update(loop.diagnostics.weight_norms())
        metrics.update(loop.diagnostics.activations(data.x_val[: cfg.batch_size].to(loop.device)))
        metrics.update(initial)
    return metrics


def _record_epoch(
    loop: _Loop, result: FitResult, metrics: dict[str, float], metric: str, mode: str, epoch: int
) -> None:
    """Mark divergence or keep the best epoch (its weights on rank 0), then append the metrics to the history."""
    value = metrics.get(metric, float("nan"))
    finite = all(math.isfinite(metrics[k]) for k in ("train_loss", "val_loss") if k in metrics)
    if not finite:
        result.diverged = True
        metrics["diverged"] = 1.0
    elif result.best_metric is None or (value > result.best_metric if mode == "max" else value < result.best_metric):
        result.best_metric, result.best_epoch = value, epoch + 1
        if loop.rank == 0:
            result.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in loop.base.state_dict().items()})
    result.history.append(metrics)


def _checkpoint(loop: _Loop, result: FitResult, epoch: int) -> dict[str, Any]:
    """The state to resume after `epoch` (0-based) from; built only when `report` asks for it."""
    return {
        "model": loop.base.state_dict(),
        "optimizers": [o.state_dict() for o in loop.optimizers],
        "schedulers": [s.state_dict() for s in loop.schedulers],
        "epoch": epoch + 1,
        "history": result.history,
        "best_metric": result.best_metric,
        "best_epoch": result.best_epoch,
        "best_state": result.best_state,
    }


def fit(
    model: nn.Module,
    data: Splits,
    task: Task,
    cfg: TrainConfig,
    report: Report | None = None,
    *,
    seed: int = 0,
    metric: str | None = None,
    mode: str | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train `model` on `data.x_train` for `cfg.epochs`, evaluating on the validation split each epoch.

    `report(metrics, checkpoint)` is called once per epoch on every rank with the reduced metrics and a
    thunk that builds a checkpoint dict (model, optimizers, epoch, best) only if the caller wants one.
    `resume` is such a dict: training continues after its epoch.
    """
    metric, mode = metric or task.metric, mode or task.mode
    loop = _setup(model, data, task, cfg)
    x_train, y_train = data.x_train, data.y_train
    if cfg.train_limit:
        x_train, y_train = x_train[: cfg.train_limit], y_train[: cfg.train_limit]
    # DistributedSampler with num_replicas=1 is a seeded shuffle, so one code path serves both cases.
    sampler = DistributedSampler(range(len(x_train)), num_replicas=loop.world, rank=loop.rank, shuffle=True, seed=seed)
    result = FitResult()
    start_epoch = _restore(loop, resume, result) if resume else 0
    # Sent with the first epoch's metrics; a resumed run already sent them.
    initial = _initial_diagnostics(loop, task, cfg, x_train, y_train) if start_epoch == 0 else {}
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        sums = _train_epoch(loop, task, cfg, x_train, y_train, sampler, epoch, seed)
        train_stats = task.finalize(all_reduce_sums(sums, loop.device), "train")
        seconds = time.perf_counter() - t0
        # The last step's gradients, read before anything else touches them.
        grads = loop.diagnostics.grad_norms() if loop.diagnostics and loop.rank == 0 else {}
        for s in loop.schedulers:
            s.step()
        metrics = _epoch_metrics(loop, data, task, cfg, epoch, train_stats, seconds, len(x_train), grads, initial)
        initial = {}
        _record_epoch(loop, result, metrics, metric, mode, epoch)
        if report is not None:
            report(metrics, functools.partial(_checkpoint, loop, result, epoch))
        if result.diverged:
            break  # every rank saw the same reduced loss, so all stop together
    return result
