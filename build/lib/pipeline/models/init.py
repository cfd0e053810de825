"""Weight initialization schemes compared in the initialization study; applied after a model is built."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import ConfigError

INIT_SCHEMES = ("default", "normal", "xavier", "kaiming")

# the small fixed-std Gaussian of the pre-Glorot era (AlexNet's N(0, 0.01)), which vanishes in deep nets
NORMAL_STD = 0.01


def apply_init(model: nn.Module, scheme: str, seed: int | None = None) -> nn.Module:
    """Re-initialize every Conv/Linear weight by `scheme` with zero biases; "default" keeps torch's init."""
    if scheme not in INIT_SCHEMES:
        raise ConfigError(f"unknown init scheme {scheme!r}; allowed: {', '.join(INIT_SCHEMES)}", key="init")
    if scheme == "default":
        return model
    # a private generator so seeding the init does not reset the global stream used for data order and dropout
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                continue
            if scheme == "normal":
                nn.init.normal_(m.weight, 0.0, NORMAL_STD, generator=gen)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight, generator=gen)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
