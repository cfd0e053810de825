"""The task base: what a batch's loss and metrics are, and how one training step updates the model.

The training loop (`pipeline.train.fit`) never forks per family: a family with an unusual update
(a GAN's two optimizers and alternating steps) registers a task that overrides `train_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import TrainConfig
from pipeline.datainfo import TaskKind
from pipeline.registry import Options, Registry

TASKS: Registry[Task] = Registry("task")
TRAIN_METRICS = ("loss", "grad_norm")  # what Task.train_step sums, reported as train_<key>


def register_task(
    name: str, *, val: tuple[str, ...], labels: TaskKind | None, train: tuple[str, ...] = TRAIN_METRICS
) -> Callable[[type[Task]], type[Task]]:
    """File a task under `name` with what it reports each epoch through `finalize`: `val_<k>` for k in `val` (from
    batch_sums), `train_<k>` for k in `train` (from train_step); and `labels`, the data set task whose targets its
    loss reads (None: it ignores them). A study's metric is checked against these before anything runs;
    tests/test_preflight.py recomputes them from the tasks themselves."""
    return TASKS.register(name, Options, train=train, val=val, labels=labels)


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class Task:
    """Supervised learning with one optimizer. Subclasses change the loss and the metrics."""

    metric = "val_loss"  # the default primary metric, used when a study does not name one
    mode = "min"

    def __init__(self, options: Options | None = None):
        self.options = options

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def batch_sums(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sums over the batch (not means), so shards of a split add up exactly across ranks."""
        n = torch.tensor(float(_count(y)), device=out.device)
        return {"loss": self.loss(out, y).detach() * n, "count": n}

    def finalize(self, sums: dict[str, float], prefix: str) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        return {f"{prefix}_{k}": v / n for k, v in sums.items() if k != "count"}

    def optimizers(self, model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
        return [build_optimizer(model.parameters(), cfg)]

    def distribute(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Wrap for DDP. Families whose step calls sub-networks directly wrap each one instead."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    def train_step(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizers: list[torch.optim.Optimizer],
        cfg: TrainConfig,
    ) -> dict[str, torch.Tensor]:
        (opt,) = optimizers
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = self.loss(out, y)
        loss.backward()
        norm = clipped_grad_norm(model, cfg.grad_clip)
        opt.step()
        n = self.step_count(y)
        count = n if isinstance(n, torch.Tensor) else torch.tensor(n)
        return {"loss": loss.detach() * n, "grad_norm": norm.detach() * n, "count": count}

    def step_count(self, y: torch.Tensor) -> float | torch.Tensor:
        """How many targets a batch's mean loss averages over (its sums are weighted by it)."""
        return float(_count(y))


def clipped_grad_norm(module: nn.Module, grad_clip: float | None) -> torch.Tensor:
    """The gradient norm before clipping (what a clipping study wants to see); clips to `grad_clip` when set."""
    if grad_clip is not None:
        return torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    return grad_norm(module)


def _count(y: torch.Tensor) -> int:
    # Sequence targets pad with -100, which must not count.
    return int((y != -100).sum()) if y.dtype == torch.long and y.ndim > 1 else len(y)


def grad_norm(model: nn.Module) -> torch.Tensor:
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # One fused multi-tensor kernel on a GPU instead of one per parameter (as clip_grad_norm_ does): this
    # per-step metric cost a ResNet-20 9% of its throughput (benchmarks/gpu_resnet.py). Same loop on the CPU.
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


@register_task("classification", val=("loss", "accuracy"), labels="classification")
class Classification(Task):
    metric, mode = "val_accuracy", "max"

    def loss(self, out, y):
        if out.ndim == 3:  # (batch, time, classes): taggers and language models
            return F.cross_entropy(out.flatten(0, 1), y.flatten(), ignore_index=-100)
        return F.cross_entropy(out, y)

    def batch_sums(self, out, y):
        sums = super().batch_sums(out, y)
        pred = out.argmax(dim=-1)
        sums["accuracy"] = ((pred == y) & (y != -100)).sum().float()
        return sums


@register_task("binary", val=("loss", "accuracy"), labels="binary")
class Binary(Task):
    metric, mode = "val_accuracy", "max"

    def loss(self, out, y):
        return F.binary_cross_entropy_with_logits(out.view(-1), y.view(-1).float())

    def batch_sums(self, out, y):
        sums = super().batch_sums(out, y)
        sums["accuracy"] = ((out.view(-1) > 0).float() == y.view(-1).float()).sum().float()
        return sums


@register_task("regression", val=("loss",), labels="regression")
class Regression(Task):
    def loss(self, out, y):
        return F.mse_loss(out.view(len(y), -1), y.view(len(y), -1).float())
