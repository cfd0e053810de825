"""Load a finished trial back: its resolved config and its model with the best-validation weights.

The one loader the report and its sections use. It reads the run's `config.yaml` artifact and its MLflow logged
model (`mlflow.pytorch.load_model`, the id in the run's `best_model_id` tag); a run logged before models were
(a `best_model.pt` state dict) is rebuilt with `pipeline.build`, exactly as the trial built it.
When that cannot be done (no store, no prepared data, a run that never finished an epoch) it says why in
`problem` / the log and returns None, so a report still builds from runs.json alone.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from pipeline import tracking
from pipeline.build import build_task
from pipeline.build import untrained as build_untrained
from pipeline.config import TrialConfig
from pipeline.data import Splits, load_prepared
from pipeline.runs import Run, unflatten
from pipeline.tasks import Task

log = logging.getLogger(__name__)


@dataclass
class Trained:
    model: nn.Module  # best-validation weights, eval mode, on the CPU
    config: TrialConfig
    data: Splits
    run: Run

    @property
    def task(self) -> Task:
        return build_task(self.config, self.data.info)


def store_problem(uri: str | None) -> str | None:
    """Why the MLflow store at `uri` cannot be used, or None when it looks reachable.

    Never creates a store: MLflow would silently make an empty SQLite file at a wrong path.
    """
    if not uri:
        return "sweep.json names no tracking_uri"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        return None if path.is_file() else f"no MLflow database at {path}"
    if uri.startswith("file:"):
        from urllib.parse import urlparse

        path = Path(urlparse(uri).path)
        return None if path.is_dir() else f"no MLflow file store at {path}"
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=3).raise_for_status()
        except requests.RequestException as e:
            return f"MLflow server {uri} unreachable ({type(e).__name__})"
    return None


def quiet_downloads() -> contextlib.AbstractContextManager[None]:
    """No tqdm bars from artifact downloads in a stage's log."""
    return tracking.scoped_env(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")


def run_config(client: Any, run: Run, workdir: Path) -> dict[str, Any]:
    """The run's resolved config as a dict: its config.yaml artifact, else its logged params."""
    try:
        return yaml.safe_load(Path(client.download_artifacts(run["run_id"], "config.yaml", str(workdir))).read_text())
    except Exception:
        return unflatten(run["params"])


class ModelLoader:
    """`loader(run)` -> Trained, or None with the reason logged. Caches the prepared data sets it reads."""

    def __init__(self, tracking_uri: str | None, data_dir: str | Path | None):
        self.uri = tracking_uri
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.problem: str | None = "no prepared data folder given" if data_dir is None else store_problem(tracking_uri)
        self._data: dict[str, Splits] = {}

    def data(self, cfg: TrialConfig) -> Splits:
        key = repr((cfg.dataset.name, sorted(cfg.dataset.options.items())))
        if key not in self._data:
            assert self.data_dir is not None
            self._data[key] = load_prepared(self.data_dir, cfg.dataset.name, cfg.dataset.options)
        return self._data[key]

    def load(self, run: Run) -> Trained:
        """Like calling the loader, but raises instead of returning None."""
        if self.problem:
            raise FileNotFoundError(self.problem)
        c = tracking.client(self.uri)
        model_id = run["tags"].get("best_model_id")
        with tempfile.TemporaryDirectory() as d, quiet_downloads():
            cfg = TrialConfig.model_validate(run_config(c, run, Path(d)))
            if model_id:
                import mlflow.pytorch

                model = mlflow.pytorch.load_model(f"models:/{model_id}", map_location="cpu")
            else:
                path = c.download_artifacts(run["run_id"], "best_model.pt", d)
                state = torch.load(path, map_location="cpu", weights_only=True)
        data = self.data(cfg)
        if not model_id:
            model = self.untrained(cfg)
            model.load_state_dict(state)
        return Trained(model.eval(), cfg, data, run)

    def untrained(self, cfg: TrialConfig) -> nn.Module:
        """The run's model before its first step, as the trial built it (same seed, same init), on its data's
        shapes. Building seeds torch: the caller's random stream stays as it was."""
        with torch.random.fork_rng(devices=[]):
            return build_untrained(cfg, self.data(cfg).info)[0]

    def __call__(self, run: Run) -> Trained | None:
        if self.problem:  # said once by the caller (`problem`), not once per run
            return None
        try:
            return self.load(run)
        except Exception as e:  # no artifact (a run that never finished an epoch), or an unreachable store
            log.warning("run %s: best model not loaded (%s: %s)", run["run_id"], type(e).__name__, str(e)[:200])
            return None
