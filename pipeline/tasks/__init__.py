"""Tasks: what a batch's loss and metrics are, and how one training step updates the model.

A registry (`TASKS`) like the models': every family module is imported here, so registration never depends
on import order. The training loop (`pipeline.train.fit`) never forks per family: a family with an unusual
update (a GAN's two optimizers and alternating steps) registers a task that overrides `train_step`.
"""

from pipeline.tasks import generative, text  # generative and language tasks register themselves
from pipeline.tasks.base import (
    TASKS,
    Binary,
    Classification,
    Regression,
    Task,
    build_optimizer,
    grad_norm,
)


def task_for(kind: str) -> Task:
    """The task of a kind (`classification`, `vae`, ...); the kind comes from `pipeline.build.task_kind`."""
    return TASKS.build(kind)
