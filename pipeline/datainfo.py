"""What a model needs to know about its data, passed from the dataset to the model builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TaskKind = Literal["classification", "binary", "regression", "generative", "language_model", "tagging"]
# What a data set's samples are, as its registry entry declares them: a rank-3 float tensor is an "image" ("unit_image"
# when its pixels stay in [0, 1], unnormalized), rank 1 a "vector", long token ids "tokens".
InputKind = Literal["image", "unit_image", "vector", "tokens"]


@dataclass(frozen=True)
class DataInfo:
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    num_classes: int = 0  # classes, or output size for regression
    task: TaskKind = "classification"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. vocab_size, pad_index
