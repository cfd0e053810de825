"""A verdict must not depend on the install or on the run: the dependencies come from one lock, every run names the
machine and the torch build that trained it, and one study run twice on one machine gives the same numbers to the
last bit.

Real parts: requirements.lock and pyproject.toml as shipped, the installed packages' own metadata, and two sweeps of
a tiny study through `run_study` on the session's local Ray runtime, each into its own SQLite MLflow store."""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline import tracking
from pipeline.config import load_params, load_study
from pipeline.sweep import run_study
from tests.conftest import REPO, SERIAL_TRIALS, TINY_SPEC, write_params, write_spec

LOCK = REPO / "requirements.lock"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Installed by the venv itself, never by the lock: pip is the installer, not a dependency.
INSTALLER = {"pip"}


def _locked() -> dict[str, str]:
    """name -> version of every `name==version` line of the lock (hash and comment lines left out)."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", LOCK.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def _closure(roots: list[tuple[Requirement, str]]) -> dict[str, set[Requirement]]:
    """Every distribution the roots need on this machine (markers evaluated here, extras followed), from the installed
    packages' own metadata: name -> the requirements that named it."""
    needed: dict[str, set[Requirement]] = {}
    todo, seen = list(roots), set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        needed.setdefault(name, set()).add(req)
        for want in [""] + sorted(req.extras):
            if (name, want) in seen:
                continue
            seen.add((name, want))
            todo += [(Requirement(r), want) for r in distribution(name).requires or []]
    return needed


def test_the_lock_pins_exactly_what_pyproject_needs_and_every_pin_has_hashes():
    locked = _locked()
    assert len(locked) > 100 and {"torch", "ray", "mlflow", "dvc", "pytest"} <= set(locked)
    roots = [(Requirement(r), "") for r in PROJECT["dependencies"]]
    roots += [(Requirement(r), "test") for r in PROJECT["optional-dependencies"]["test"]]
    needed = _closure(roots)
    # Nothing the project needs is left to the resolver, nothing stale stays in the lock...
    assert set(needed) - set(locked) == set(), "not in requirements.lock: regenerate it (docs/dependencies.md)"
    assert set(locked) - set(needed) == set(), "in requirements.lock but no longer needed: regenerate it"
    # ...and every pin satisfies every range that names it (pyproject.toml's and the packages' own).
    for name, reqs in needed.items():
        for req in reqs:
            assert req.specifier.contains(locked[name], prereleases=True), f"{name}=={locked[name]} breaks {req}"
    # pip checks each file it installs against these (hash-checking mode: a mirror cannot swap a wheel).
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    assert all("--hash=sha256:" in e for e in entries if "==" in e)


def test_this_environment_is_the_lock():
    """The tests run on the locked versions (`make install`); a package upgraded by hand shows here first."""
    wrong = {}
    for name, version in _locked().items():
        try:
            installed = distribution(name).version
        except PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, "(locked, installed): run `make install`"


def test_machine_tags_name_the_cpu_its_instruction_set_and_the_torch_build():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        tags = tracking.machine_tags("cpu")
        assert tags["torch.num_threads"] == "1"  # read when the run starts, after the trial set its threads
        torch.set_num_threads(2)
        assert tracking.machine_tags("cpu")["torch.num_threads"] == "2"
    finally:
        torch.set_num_threads(threads)
    assert all(isinstance(v, str) and 0 < len(v) <= 5000 for v in tags.values()), tags
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert tags["host.cpu_model"] == re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).strip()
    flags = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).split()
    simd = set(tags["host.cpu_simd"].split())
    assert simd <= set(flags) and ("avx2" in flags) == ("avx2" in simd)
    assert tags["torch.version"] == torch.__version__ and tags["torch.git_version"] == torch.version.git_version
    assert tags["torch.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert tags["torch.cpu_capability"] in torch.__config__.show()  # "CPU capability usage: AVX512"
    assert re.fullmatch(r"[0-9a-f]{16}", tags["torch.build_sha256"]) and "host.gpu_model" not in tags


# --------------------------------------------------------------------------- one study, run twice


# Per-epoch values that measure the machine's speed and memory, not the arithmetic: they differ between any two runs.
MEASURED = ("epoch_seconds", "samples_per_s", "peak_memory_mb")


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory, prepared_dir, ray_local):
    """The same tiny study (2 variants, 1 seed, 2 epochs) swept twice, each into a folder of its own: its own
    tracking store, Ray storage, artifacts and results, so the second sweep finds nothing to reuse and trains."""
    sweeps = []
    for n in (1, 2):
        folder = tmp_path_factory.mktemp(f"sweep{n}")
        params = write_params(folder, **{**SERIAL_TRIALS, "profiles.tiny": {"seeds": 1, "train": {"epochs": 2}}})
        study = load_study(write_spec(folder, "s", TINY_SPEC), load_params(params), str(params))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PIPELINE_ROOT", str(folder))  # MLflow artifacts under the folder, not the repository
            mp.delenv("MLFLOW_TRACKING_URI", raising=False)
            summary = run_study(study, prepared_dir, folder / "results")
        runs = json.loads((folder / "results" / "runs.json").read_text())
        sweeps.append((summary, {(r["tags"]["variant"], r["tags"]["seed"]): r for r in runs}))
    return sweeps


def _numbers(run: dict) -> tuple[dict, dict]:
    """(per-epoch history, final values) of a run, less what the machine measures."""
    history = {k: v for k, v in run["history"].items() if k not in MEASURED}
    final = {k: v for k, v in run["final"].items() if k not in MEASURED}
    return history, final


@pytest.mark.slow
def test_one_study_run_twice_gives_bit_identical_numbers_per_seed(two_sweeps):
    (first, first_runs), (second, second_runs) = two_sweeps
    for summary in (first, second):
        assert (summary["trials_trained"], summary["trials_reused"], summary["errors"]) == (2, 0, 0)
    assert set(first_runs) == set(second_runs) == {("relu", "0"), ("tanh", "0")}
    for key, run in first_runs.items():
        again = second_runs[key]
        assert run["run_id"] != again["run_id"]  # trained again, not the same run read twice
        history, final = _numbers(run)
        assert [epoch for epoch, _ in history["train_loss"]] == [1, 2] and len(history["val_loss"]) == 2
        assert {"train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "best_epoch"} <= set(final)
        # ==, not approx: float equality of every logged value, per epoch and final.
        assert _numbers(again) == (history, final), key
    # The two variants do differ: equal numbers come from equal arithmetic, not from a run that logged nothing.
    assert _numbers(first_runs[("relu", "0")]) != _numbers(first_runs[("tanh", "0")])


@pytest.mark.slow
def test_every_trial_run_names_its_machine_and_torch_build(two_sweeps):
    (summary, runs), _ = two_sweeps
    expected = tracking.machine_tags()
    client = MlflowClient(summary["tracking_uri"])
    for run in runs.values():
        tags = client.get_run(run["run_id"]).data.tags
        assert tags["torch.num_threads"] == "1"  # the trial's cpus_per_worker, not this process's threads
        for key in set(expected) - {"torch.num_threads"}:
            assert tags[key] == expected[key], key  # the Ray worker that trained it is this machine, this torch
        assert run["tags"]["torch.cpu_capability"] == expected["torch.cpu_capability"]  # and runs.json carries them
