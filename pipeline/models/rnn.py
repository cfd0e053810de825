"""Recurrent classifiers (vanilla RNN, LSTM, GRU) reading an image row by row or a vector entry by entry."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.models import register_model
from pipeline.registry import Count, Float, Options, Width

Cell = Literal["rnn", "lstm", "gru"]

# weight matrices per layer relative to a vanilla RNN: LSTM has 4 gates, GRU 3
_GATES: dict[str, int] = {"rnn": 1, "gru": 3, "lstm": 4}
_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RNNOptions(Options):
    cell: Cell = "lstm"
    hidden_size: Width = 64
    num_layers: Count = 1
    dropout: Float = Field(default=0.0, ge=0.0, lt=1.0)  # between stacked layers, as torch applies it
    # Equal-budget comparisons: when set, the hidden size is chosen so the recurrent layers have about this
    # many parameters (hidden_size_for_params), and hidden_size is not used.
    param_budget: Count | None = None


def sequence_shape(input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(steps, features per step): an image gives H rows of C*W values, a vector F steps of one value."""
    if len(input_shape) == 3:
        c, h, w = input_shape
        return h, c * w
    if len(input_shape) == 1:
        return input_shape[0], 1
    raise ConfigError(f"rnn_classifier needs (C, H, W) or (F,) input, got shape {tuple(input_shape)}", key="model")


class RNNClassifier(nn.Module):
    def __init__(self, opts: RNNOptions, info: DataInfo):
        super().__init__()
        _, n_in = sequence_shape(tuple(info.input_shape))
        hidden = opts.hidden_size
        if opts.param_budget is not None:
            hidden = hidden_size_for_params(opts.cell, n_in, opts.param_budget, opts.num_layers)
        self.hidden_size = hidden
        self.rnn = _CELLS[opts.cell](
            n_in,
            hidden,
            num_layers=opts.num_layers,
            batch_first=True,
            dropout=opts.dropout if opts.num_layers > 1 else 0.0,  # torch warns about dropout on a single layer
        )
        self.head = nn.Linear(hidden, max(info.num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # (B, C, H, W) -> (B, H, C*W): row h carries every channel's row h
            x = x.permute(0, 2, 1, 3).flatten(2)
        elif x.dim() == 2:
            x = x.unsqueeze(-1)
        out, _ = self.rnn(x)
        # last step of the top layer: the state that has read the whole sequence
        return self.head(out[:, -1])


@register_model("rnn_classifier", RNNOptions, inputs="any")
def build_rnn_classifier(opts: RNNOptions, info: DataInfo) -> nn.Module:
    """A recurrent layer over the input sequence, then a linear classifier on the last hidden state."""
    return RNNClassifier(opts, info)


def recurrent_parameter_count(module: nn.Module) -> int:
    """Parameters of the recurrent layers only (the head and any embedding excluded)."""
    return sum(p.numel() for m in module.modules() if isinstance(m, nn.RNNBase) for p in m.parameters())


def recurrent_params(cell: str, input_size: int, hidden_size: int, num_layers: int = 1) -> int:
    """What torch allocates: per gate, W_ih, W_hh and the two biases b_ih and b_hh."""
    g, h = _GATES[cell], hidden_size
    first = g * (h * input_size + h * h + 2 * h)
    rest = g * (h * h + h * h + 2 * h)  # upper layers read the layer below's h-wide output
    return first + (num_layers - 1) * rest


def hidden_size_for_params(cell: str, input_size: int, target_params: int, num_layers: int = 1) -> int:
    """Hidden size whose recurrent parameter count is closest to `target_params` (equal-budget comparisons)."""
    if cell not in _GATES:
        raise ConfigError(f"unknown cell {cell!r}; allowed: {', '.join(_GATES)}", key="cell")
    lo, hi = 1, 1
    while recurrent_params(cell, input_size, hi, num_layers) < target_params:
        hi *= 2
    # smallest h reaching the target; the count grows with h, so bisection finds it
    while lo < hi:
        mid = (lo + hi) // 2
        if recurrent_params(cell, input_size, mid, num_layers) < target_params:
            lo = mid + 1
        else:
            hi = mid
    if lo > 1:
        below = recurrent_params(cell, input_size, lo - 1, num_layers)
        if target_params - below < recurrent_params(cell, input_size, lo, num_layers) - target_params:
            return lo - 1
    return lo
