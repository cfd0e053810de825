"""Reproducible, distributed deep-learning studies: DVC stages, Ray Tune sweeps, DDP trials, MLflow runs."""

__version__ = "0.1.0"
