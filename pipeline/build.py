"""One place that turns a resolved trial config into objects: the task kind, the task, and the untrained,
seeded, initialized model. Trials, `rerun`, the report's model loader and the benchmarks all build through
here, so they build exactly what a trial trained."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.config import TrialConfig
from pipeline.datainfo import DataInfo
from pipeline.models import MODELS, build_model
from pipeline.models.init import apply_init
from pipeline.tasks import Task, task_for


def task_kind(model_name: str, info: DataInfo) -> str:
    """A family that fixes its own task (a VAE, a language model) says so in its registry entry; any other
    family takes the data set's task (classification, binary, regression)."""
    return MODELS.get(model_name).meta.get("task") or info.task


def build_task(cfg: TrialConfig, info: DataInfo) -> Task:
    return task_for(task_kind(cfg.model.name, info))


def untrained(cfg: TrialConfig, info: DataInfo, device: torch.device | str = "cpu") -> tuple[nn.Module, Task]:
    """The trial's seeded, initialized model on `device`, and its task, before any training step."""
    torch.manual_seed(cfg.seed)
    model = apply_init(build_model(cfg.model.name, cfg.model.options, info), cfg.model.init, seed=cfg.seed)
    return model.to(device), build_task(cfg, info)
