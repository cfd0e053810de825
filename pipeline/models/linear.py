"""Linear models: linear/logistic/softmax regression and polynomial regression (the curve-fitting classic)."""

from __future__ import annotations

import math

import torch
from pydantic import Field, StrictBool, StrictInt
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.models import register_model
from pipeline.registry import Options


class LinearOptions(Options):
    bias: StrictBool = True


@register_model("linear", LinearOptions, inputs="any")
def build_linear(opts: LinearOptions, info: DataInfo) -> nn.Module:
    """One nn.Linear on the flattened input; the task's loss makes it linear, logistic or softmax regression."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(info.input_shape), max(info.num_classes, 1), opts.bias))


class PolynomialOptions(Options):
    degree: StrictInt = Field(default=3, ge=1, le=10)


class Polynomial(nn.Module):
    """Powers x^1..x^degree of every feature, then one linear layer: least squares on a polynomial basis."""

    def __init__(self, n_features: int, degree: int, n_out: int):
        super().__init__()
        self.degree = degree
        self.register_buffer("powers", torch.arange(1, degree + 1, dtype=torch.float32), persistent=False)
        self.linear = nn.Linear(n_features * degree, n_out)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        # (B, F) -> (B, F, degree) -> (B, F*degree), feature-major: [x1, x1^2, .., x2, x2^2, ..]
        return x.unsqueeze(-1).pow(self.powers.to(x.dtype)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.expand(x))

    def coefficients(self) -> torch.Tensor:
        """[bias, c1, .., c_degree] for one feature and one output; (n_out, 1 + F*degree) rows otherwise."""
        coef = torch.cat([self.linear.bias.unsqueeze(1), self.linear.weight], dim=1).detach()
        return coef.squeeze(0)


@register_model("polynomial", PolynomialOptions, inputs="vector")
def build_polynomial(opts: PolynomialOptions, info: DataInfo) -> nn.Module:
    if len(info.input_shape) != 1:
        raise ConfigError(f"polynomial needs (F,) vector input, got shape {tuple(info.input_shape)}", key="model")
    return Polynomial(info.input_shape[0], opts.degree, max(info.num_classes, 1))
