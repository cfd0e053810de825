"""One place that turns a resolved trial config into objects: the task kind, the task, and the untrained,
seeded, initialized model. Trials, `rerun`, the report's model loader and the benchmarks all build through
here, so they build exactly what a trial trained. Before any data is loaded, the same registry entries say whether
a model fits a data set (`misfit`), for the preflight."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.config import TrialConfig
from pipeline.data import DATASETS
from pipeline.datainfo import DataInfo
from pipeline.models import MODELS, READS, build_model
from pipeline.models.init import apply_init
from pipeline.tasks import TASKS, Task, task_for


def task_kind(model_name: str, info: DataInfo | str) -> str:
    """A family that fixes its own task (a VAE, a language model) says so in its registry entry; any other
    family takes the data set's task (classification, binary, regression): `info.task`, or the task a data set
    named `info` declares in its registry entry (before its data is loaded)."""
    data_task = DATASETS.get(info).meta["task"] if isinstance(info, str) else info.task
    return MODELS.get(model_name).meta["task"] or data_task


def misfit(model_name: str, dataset: str) -> str | None:
    """Why the model cannot train on the data set, or None if it can: it must read the data set's inputs, and its
    task's loss must read the data set's labels (a language model's loss reads next tokens, not tags)."""
    family, data = MODELS.get(model_name).meta, DATASETS.get(dataset).meta
    if data["inputs"] not in READS[family["inputs"]]:
        return f"it takes {family['inputs']} inputs and {dataset!r} gives {data['inputs']} inputs"
    labels = TASKS.get(task_kind(model_name, dataset)).meta["labels"]
    if labels is not None and labels != data["task"]:
        return f"it is a {family['task'] or 'plain'} model and {dataset!r} is labelled for {data['task']}"
    return None


def build_task(cfg: TrialConfig, info: DataInfo) -> Task:
    return task_for(task_kind(cfg.model.name, info))


def untrained(cfg: TrialConfig, info: DataInfo, device: torch.device | str = "cpu") -> tuple[nn.Module, Task]:
    """The trial's seeded, initialized model on `device`, and its task, before any training step."""
    torch.manual_seed(cfg.seed)
    model = apply_init(build_model(cfg.model.name, cfg.model.options, info), cfg.model.init, seed=cfg.seed)
    return model.to(device), build_task(cfg, info)
