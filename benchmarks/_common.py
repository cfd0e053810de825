"""What every benchmark shares: the machine, a throwaway project folder, timing and tables.

Benchmarks never touch the repository's own stores: each builds a project in a temporary folder (its own
params.yaml, experiments, prepared data, MLflow SQLite store and Ray results) and points PIPELINE_ROOT at it.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python benchmarks/x.py` from anywhere finds the package and this module


def machine() -> dict[str, str]:
    """The facts a reader needs to compare numbers: CPU model and cores, RAM, load, versions."""
    import torch

    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import psutil

        ram = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        ram = "?"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return {
        "cpu": f"{model}, {os.cpu_count()} logical cores",
        "ram": ram,
        "load average (1/5/15 min) at start": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def print_machine() -> None:
    for k, v in machine().items():
        print(f"# {k}: {v}")
    print()


def print_load(label: str = "at end") -> None:
    """Other work on a shared machine shows up here; benchmarks print it at start and end."""
    print(f"# load average (1/5/15 min) {label}: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (so a benchmark's output pastes straight into docs/benchmarks.md)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return f"{value:.3g} ({'meets' if ok else 'MISSES'} target {'<=' if lower_is_better else '>='} {target:g})"


class Project:
    """A throwaway project: params.yaml, experiments/<study>.yaml, prepared data, MLflow and Ray stores.

    `params` are dotted overrides of the repository's params.yaml; the stores always live in the folder.
    """

    def __init__(self, specs: dict[str, dict], *, params: dict[str, Any] | None = None, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="bench-"))
        (self.root / "experiments").mkdir(parents=True, exist_ok=True)
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["mlflow"]["tracking_uri"] = f"sqlite:///{self.root / 'mlflow.db'}"
        raw["ray"]["storage_path"] = str(self.root / "ray_results")
        raw["studies"] = list(specs)
        for key, value in (params or {}).items():
            node = raw
            *parents, last = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        self.params_path = self.root / "params.yaml"
        self.params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        for name, spec in specs.items():
            (self.root / "experiments" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        self.data_dir = self.root / "data" / "prepared"
        os.environ["PIPELINE_ROOT"] = str(self.root)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        self._prepare()

    def _prepare(self) -> None:
        from pipeline.config import load_params
        from pipeline.data import prepare
        from pipeline.data.base import LoadContext

        params = load_params(self.params_path)
        ctx = LoadContext(seed=params.seed, root=self.root / "raw", download=False)
        for name in params.studies:
            ds = dict(self.study(name).spec.dataset)
            prepare(ds.pop("name"), ds, ctx, self.data_dir)

    def params(self):
        from pipeline.config import load_params

        return load_params(self.params_path)

    def study(self, name: str):
        from pipeline.config import load_study

        return load_study(self.root / "experiments" / f"{name}.yaml", self.params(), str(self.params_path))

    def data(self, name: str):
        from pipeline.data import load_prepared

        ds = dict(self.study(name).spec.dataset)
        return load_prepared(self.data_dir, ds.pop("name"), ds)

    def run_study(self, name: str, out: str | None = None) -> dict[str, Any]:
        from pipeline.sweep import run_study

        return run_study(self.study(name), self.data_dir, self.root / "results" / (out or name))


def build_trial_model(cfg, data):
    """The model and task exactly as a trial builds them (same seed, same init)."""
    from pipeline.build import untrained

    return untrained(cfg, data.info)
