"""Cheap per-epoch diagnostics: per-layer gradient and weight norms, activation statistics, memory.

Everything here runs on rank 0 once per epoch (gradients of the epoch's last batch, activations of
one validation batch), so it costs a small, fixed amount next to an epoch of training.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable

import torch
from torch import nn

_PARAM_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.RNNBase, nn.Embedding)
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU)
_RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ELU)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


class Diagnostics:
    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = {n: m for n, m in model.named_modules() if isinstance(m, _PARAM_LAYERS)}
        self.acts = {n: m for n, m in model.named_modules() if isinstance(m, _ACTIVATIONS) or _is_maxout(m)}

    def grad_norms(self) -> dict[str, float]:
        out = {}
        for name, layer in self.layers.items():
            grads = [p.grad for p in layer.parameters(recurse=False) if p.grad is not None]
            if grads:
                out[f"grad_norm/{name}"] = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        return out

    def weight_norms(self) -> dict[str, float]:
        return {
            f"weight_norm/{n}": float(layer.weight.detach().norm())
            for n, layer in self.layers.items()
            if isinstance(getattr(layer, "weight", None), torch.Tensor)
        }

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> dict[str, float]:
        """Std of each activation layer's output and, for the ReLU family, the fraction of units that
        are zero (or negative, for leaky variants) on every sample of the batch: 'dead' units."""
        out: dict[str, float] = {}
        handles = []

        def hook(name: str, module: nn.Module):
            def fn(_m, _inp, y):
                if not isinstance(y, torch.Tensor):
                    return
                y = y.detach().float()
                out[f"act_std/{name}"] = float(y.std())
                if isinstance(module, _RELU_FAMILY):
                    units = y.transpose(0, 1).flatten(1) if y.ndim > 2 else y.t()
                    out[f"dead_frac/{name}"] = float((units <= 0).all(dim=1).float().mean())

            return fn

        for name, m in self.acts.items():
            handles.append(m.register_forward_hook(hook(name, m)))
        was_training = self.model.training
        self.model.eval()
        try:
            if len(x):
                self.model(x)
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        return out


def _is_maxout(m: nn.Module) -> bool:
    return type(m).__name__ == "Maxout"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Module, example: torch.Tensor) -> int:
    """Forward FLOPs of one sample, counted by torch.utils.flop_counter (multiply-add = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example[:1])
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def initial_stats(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> dict[str, float]:
    """Per-layer activation std and gradient std of one batch at initialization, before any update
    (`init_act_std/<layer>`, `init_grad_std/<layer>`): what an initialization study compares.

    Runs on a copy of the model under a forked RNG, so the training run itself is left exactly as it was
    (no BatchNorm statistics updated, no random numbers drawn from the training stream).
    """
    import copy

    probe = copy.deepcopy(model)
    diag = Diagnostics(probe)
    out = {f"init_{k}": v for k, v in diag.activations(x).items() if k.startswith("act_std/")}
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        probe.train()
        loss_fn(probe(x), y).backward()
    for name, layer in diag.layers.items():
        grads = [p.grad.flatten() for p in layer.parameters(recurse=False) if p.grad is not None]
        if grads:
            out[f"init_grad_std/{name}"] = float(torch.cat(grads).float().std())
    return out
