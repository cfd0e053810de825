"""What a model needs to know about its data, passed from the dataset to the model builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TaskKind = Literal["classification", "binary", "regression", "generative", "language_model", "tagging"]


@dataclass(frozen=True)
class DataInfo:
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    num_classes: int = 0  # classes, or output size for regression
    task: TaskKind = "classification"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. vocab_size, pad_index
