"""Multi-layer perceptron whose hidden activation is the thing under study."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.models import register_model
from pipeline.registry import Float, Options, Width

Activation = Literal["sigmoid", "tanh", "relu", "leaky_relu", "maxout"]


class Maxout(nn.Module):
    """Linear map to `pieces * out` units, then the max over each unit's pieces.

    A maxout unit owns `pieces` weight vectors, so with pieces=2 a layer has twice the parameters of
    the plain layer of the same width; the report says so next to the parameter count.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2):
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y.view(*y.shape[:-1], -1, self.pieces).amax(dim=-1)


_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


def hidden_block(activation: str, n_in: int, n_out: int) -> list[nn.Module]:
    if activation == "maxout":
        return [Maxout(n_in, n_out)]
    return [nn.Linear(n_in, n_out), _ACTIVATIONS[activation]()]


class MLPOptions(Options):
    hidden: list[Width] = Field(default_factory=lambda: [64, 64], min_length=0)
    activation: Activation = "relu"
    dropout: Float = Field(default=0.0, ge=0.0, lt=1.0)


@register_model("mlp", MLPOptions, inputs="any")
def build_mlp(opts: MLPOptions, info: DataInfo) -> nn.Module:
    n_in = math.prod(info.input_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    for width in opts.hidden:
        layers += hidden_block(opts.activation, n_in, width)
        if opts.dropout:
            layers.append(nn.Dropout(opts.dropout))
        n_in = width
    layers.append(nn.Linear(n_in, max(info.num_classes, 1)))
    return nn.Sequential(*layers)
