"""MLflow: one experiment per study, one parent run per sweep, one child run per trial.

The driver creates the store and the experiment before any trial starts: several trials opening a
fresh SQLite store at once race on its schema migration. Trials then only write to existing runs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

from pipeline.paths import project_root

# MLflow 3's UI opens an experiment without this tag on its GenAI page (traces, token usage); with it, on the runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# What the pipeline itself writes into tracked files while it runs (`dvc repro` rewrites dvc.lock after every stage,
# and DVC keeps the .gitignore files beside its outputs): not a change to the code, so not "dirty".
PIPELINE_WRITES = (":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore")


def resolve_tracking_uri(configured: str, root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI wins over params; relative SQLite/file paths become absolute under the root,
    because trials run in other working directories."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    root = root or project_root()
    path = local_store_path(uri) if uri.startswith("sqlite:") else None
    if path is not None and not path.is_absolute():
        # the inverse of local_store_path's reading: `%` would be unquoted, `?` would start the query
        text = str((root / path).resolve()).replace("%", "%25").replace("?", "%3F")
        return f"sqlite:///{text}{''.join(uri.partition('?')[1:])}"
    if "://" not in uri:
        return (root / uri).resolve().as_uri()
    return uri


def local_store_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` tracking store or the folder of a `file:` one, as MLflow opens it (SQLAlchemy
    unquotes a sqlite path and drops its `?query`; MLflow unquotes a file URI's path); None for other schemes."""
    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///") :].partition("?")[0]))
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return None


# MLflow's own switches for its HTTP client (mlflow/environment_variables.py), set where every process opens its
# store (see client): 3 retries 0, 2 and 4 s apart (plus up to 1 s of jitter each), 20 s for an answer.
TRACKING_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def client(uri: str) -> MlflowClient:
    """The client of the store at `uri`; MLflow's fluent API (logged models, flush_async_logging) points there too,
    every call: a process that uses two stores (a test, the report) must not load a model from the other one."""
    _point_fluent_api(uri)
    return _client(uri)


@contextlib.contextmanager
def scoped_env(**values: str | None) -> Iterator[None]:
    """Within the block, each named environment variable has its value (None: as it is); after it, each is back to
    what it was before, whatever the block (or MLflow within it) did to it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if value is not None})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _point_fluent_api(uri: str) -> None:
    """MLflow's fluent calls (log_model, flush_async_logging) go to `uri` from now on, not to a default ./mlflow.db in
    a trial's working directory. `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI, which
    `resolve_tracking_uri` reads as the user's choice: a process that ran one study's sweep would give the next
    study (a test's) the first one's store. The variable keeps the value the user gave it."""
    import mlflow

    with scoped_env(MLFLOW_TRACKING_URI=None):
        mlflow.set_tracking_uri(uri)


@functools.lru_cache(maxsize=8)
def _client(uri: str) -> MlflowClient:
    _point_fluent_api(uri)
    # MLflow prints "View run ... / View experiment ..." for every run it ends through a tracking server: one banner
    # per trial in a sweep's log. Its own switch, set here because every process that logs (Ray workers included)
    # opens its store through this function.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow's async logger waits on its queue with a 1 s timeout, so each shutdown of it (end_run flushes, then
    # set_terminated shuts down) sat idle up to 1 s: 1-2 s of every trial (benchmarks/trial_overhead.py). In
    # buffering mode it waits on its stop event instead and wakes at once; batches still go out every second.
    os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")
    # MLflow retries a failed HTTP call 7 times with doubling waits (~4 min) and waits 120 s for an answer: with the
    # tracking server gone, every trial and the driver would each spend minutes logging retries. A few seconds of
    # retries ride out a blip; the sweep's watchdog (pipeline.tune.guard) ends a sweep whose server stays away.
    for name, value in TRACKING_HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(uri: str, name: str, root: Path | None = None) -> str:
    """Create (once) or fetch the study's experiment. For a local store the artifacts go next to it."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        artifact_location = None
        if uri.startswith(("sqlite:", "file:")):
            artifact_location = ((root or project_root()) / "mlartifacts" / name).resolve().as_uri()
        try:
            return c.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_TAGS)
        except Exception:  # created by a concurrent driver in the meantime
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():  # an experiment made by an older version of the pipeline
        if exp.tags.get(key) != value:
            c.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def git_info(root: Path | None = None) -> dict[str, str]:
    root = root or project_root()

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *PIPELINE_WRITES))
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def source_tags(root: Path | None = None, entry: str = "") -> dict[str, str]:
    """MLflow's own provenance tags (the UI's Source column), plus `git_dirty`, which MLflow has no tag for.

    `entry` is the program that made the run (a DVC stage's script)."""
    root = root or project_root()
    info = git_info(root)
    tags = {
        "mlflow.source.git.commit": info["git_commit"],
        "mlflow.source.type": "JOB",
        "git_dirty": info["git_dirty"],
    }
    if entry:
        tags["mlflow.source.name"] = entry
    try:
        remote = subprocess.run(
            ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        branch = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        remote = branch = ""
    if remote:
        tags["mlflow.source.git.repoURL"] = remote
    if branch and branch != "HEAD":
        tags["mlflow.source.git.branch"] = branch
    return tags


def dvc_tags(stage: str, data_dir: str | Path, root: Path | None = None) -> dict[str, str]:
    """The DVC stage that made a run and the `dvc.lock` hash of the data it read (the prepare stage's output)."""
    import yaml

    root = root or project_root()
    tags = {"dvc.stage": stage}
    lock = root / "dvc.lock"
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except (OSError, yaml.YAMLError):
        return tags
    data = Path(data_dir)
    data = (
        data.resolve().relative_to(root.resolve())
        if data.is_absolute() and data.resolve().is_relative_to(root.resolve())
        else data
    )
    for entry in stages.values():
        for out in entry.get("outs", []) if isinstance(entry, dict) else []:
            if isinstance(out, dict) and Path(str(out.get("path", ""))) == data and out.get("md5"):
                tags["dvc.data.md5"] = str(out["md5"])
                tags["dvc.data.path"] = data.as_posix()
    return tags


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "torchvision", "ray", "mlflow", "dvc", "numpy", "scikit-learn"):
        try:
            out[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# The CPU flags that decide which vector kernels torch, MKL and oneDNN dispatch to (and so a float result's last bits).
SIMD_FLAG = ("sse", "ssse", "avx", "fma", "f16c", "amx", "asimd", "sve", "neon")


@functools.cache
def _machine() -> dict[str, str]:
    """What a trial's numbers can depend on beyond its config and package versions: the CPU and the torch build."""
    import torch

    cpu: dict[str, str] = {}
    with contextlib.suppress(OSError):  # Linux; elsewhere platform.processor() names the CPU
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            cpu.setdefault(key.strip(), value.strip())
    flags = sorted(set(cpu.get("flags", cpu.get("Features", "")).split()))
    config = torch.__config__.show()
    blas = next((line.strip(" -") for line in config.splitlines() if "Math Kernel" in line or "BLAS" in line), "")
    return {
        "host.cpu_model": cpu.get("model name") or platform.processor() or platform.machine(),
        "host.cpu_simd": " ".join(f for f in flags if f.startswith(SIMD_FLAG)),
        "host.cpu_flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
        "host.cpu_count": str(os.cpu_count()),
        "host.platform": platform.platform(),
        "torch.version": torch.__version__,
        "torch.git_version": torch.version.git_version,
        "torch.cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch runs: AVX2, AVX512...
        "torch.blas": blas,
        "torch.build_sha256": hashlib.sha256(config.encode()).hexdigest()[:16],  # of torch.__config__.show()
    }


def machine_tags(device: Any = None) -> dict[str, str]:
    """Tags for a trial's run, taken in the process that trains it: the CPU model and instruction set, the torch
    build, the threads torch uses now, and the GPU where `device` is one. Where two runs of one trial differ in
    their last bits, look here first."""
    import torch

    tags = {**_machine(), "torch.num_threads": str(torch.get_num_threads())}
    if device is not None and torch.device(device).type == "cuda":
        tags["host.gpu_model"] = torch.cuda.get_device_name(device)
        tags["torch.cudnn"] = str(torch.backends.cudnn.version())
    return {k: v[:5000] for k, v in tags.items()}  # MLflow's limit on a tag's value


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def find_runs(uri: str, experiment_id: str, filter_string: str) -> list:
    c = client(uri)
    runs, token = [], None
    while True:
        page = c.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def start_or_resume_run(
    uri: str, experiment_id: str, run_name: str, tags: dict[str, str], match: dict[str, str]
) -> str:
    """The run whose tags equal `match`, set RUNNING again, or a new one: one run per trial, even
    across retries and resumed sweeps."""
    c = client(uri)
    flt = " and ".join(f"tags.{k} = '{v}'" for k, v in match.items())
    existing = find_runs(uri, experiment_id, flt)
    if existing:
        run_id = existing[0].info.run_id
        c.update_run(run_id, status="RUNNING")
        # Placement tags (node, pid) describe the latest attempt.
        set_tags(uri, run_id, {**{k: v for k, v in tags.items() if not k.startswith("mlflow.")}, "resumed": "true"})
        return run_id
    return c.create_run(experiment_id, tags={**tags, **match}, run_name=run_name).info.run_id


def completed_run(uri: str, experiment_id: str, trial_key: str, parent_run_id: str):
    """The trial's run under this run of its sweep (`parent_run_id`: a resumed sweep keeps its parent, a sweep run
    again after it completed gets a new one) if it already ran to the end (closed by the trial, with an outcome)."""
    runs = find_runs(
        uri,
        experiment_id,
        f"tags.trial_key = '{trial_key}' and tags.mlflow.parentRunId = '{parent_run_id}' "
        "and attributes.status = 'FINISHED'",
    )
    return next((r for r in runs if "outcome" in r.data.tags), None)


def finished_trials(uri: str, experiment_id: str, parent_run_id: str | None = None) -> dict[str, str]:
    """trial identity -> the newest run that trained a trial with it to its end (closed FINISHED by the trial, with
    an outcome), over every sweep of the experiment, or only under `parent_run_id`: one search, however many trials
    the sweep has. A run that ASHA or a signal stopped has no outcome; one that failed is not FINISHED: neither is a
    result to reuse."""
    flt = "attributes.status = 'FINISHED' and tags.trial_identity LIKE '%'"
    if parent_run_id is not None:
        flt += f" and tags.mlflow.parentRunId = '{parent_run_id}'"
    runs = find_runs(uri, experiment_id, flt)
    out: dict[str, tuple[int, str]] = {}
    for r in runs:
        if "outcome" not in r.data.tags:
            continue
        key, started = r.data.tags["trial_identity"], r.info.start_time or 0
        if key not in out or started > out[key][0]:
            out[key] = (started, r.info.run_id)
    return {key: run_id for key, (_, run_id) in out.items()}


def missing_artifacts(uri: str, run) -> str | None:
    """Why a finished run cannot stand for its trial any more (a file its report reads, or its logged model, was
    deleted), or None if all of it is there."""
    from mlflow.exceptions import MlflowException

    c = client(uri)
    wanted = [name for name in run.data.tags.get("artifacts", "").split(",") if name]
    present = {a.path for a in c.list_artifacts(run.info.run_id)} if wanted else set()
    gone = [name for name in wanted if name not in present]
    if gone:
        return f"its {', '.join(gone)} {'is' if len(gone) == 1 else 'are'} gone"
    model_id = run.data.tags.get("best_model_id")
    if model_id:
        try:
            c.get_logged_model(model_id)  # a deleted model still lists its files, but no longer loads
            if not c.list_logged_model_artifacts(model_id):
                return f"its logged model {model_id} has no files"
        except MlflowException:
            return f"its logged model {model_id} is gone"
    return None


def adopt_run(uri: str, run, parent_run_id: str) -> None:
    """Make a finished trial's run a child of the sweep run `parent_run_id` (where the MLflow UI and the export
    look), and add that sweep to the run's `used_by_sweeps` tag (parent run ids, the first the one it trained in)."""
    tags = run.data.tags
    users = [u for u in tags.get("used_by_sweeps", tags.get("trained_under", "")).split(",") if u]
    if parent_run_id not in users:
        users.append(parent_run_id)
    set_tags(uri, run.info.run_id, {"mlflow.parentRunId": parent_run_id, "used_by_sweeps": ",".join(users)})


def log_params(uri: str, run_id: str, params: dict[str, Any]) -> None:
    c = client(uri)
    items = [Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in flatten(params).items()]
    existing = c.get_run(run_id).data.params
    items = [p for p in items if p.key not in existing]  # params are immutable: a resumed run has them
    for i in range(0, len(items), 100):
        c.log_batch(run_id, params=items[i : i + 100])


# Epoch metrics wait here and go to MLflow in one asynchronous log_batch at most every SEND_EVERY_S. One MLflow
# call per epoch cost 0.8 ms on the training thread plus a background write: 3-6% of a 30 ms digits epoch
# (benchmarks/pipeline_costs.py). flush() and end_run() send what is pending; values keep their own step and time.
SEND_EVERY_S = 1.0
_pending: dict[tuple[str, str], list[Metric]] = {}
_sent_at: dict[tuple[str, str], float] = {}


def log_metrics(uri: str, run_id: str, metrics: dict[str, float], step: int, synchronous: bool = False) -> None:
    """Log one step's metrics, batched with earlier steps' (see SEND_EVERY_S); `synchronous` sends them all now."""
    ts = int(time.time() * 1000)
    key = (uri, run_id)
    _pending.setdefault(key, []).extend(Metric(k, float(v), ts, step) for k, v in metrics.items())
    if synchronous or time.monotonic() - _sent_at.get(key, -SEND_EVERY_S) >= SEND_EVERY_S:
        _send(key, synchronous)


def _send(key: tuple[str, str], synchronous: bool) -> None:
    items = _pending.pop(key, [])
    _sent_at[key] = time.monotonic()
    if items:
        client(key[0]).log_batch(key[1], metrics=items, synchronous=synchronous)


def set_tags(uri: str, run_id: str, tags: dict[str, Any]) -> None:
    client(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def flush(uri: str) -> None:
    """Send the pending metrics of every run on `uri` and block until all of it is written."""
    import mlflow

    for key in [k for k in _pending if k[0] == uri]:
        _send(key, synchronous=False)
    client(uri)  # the fluent API's store is this client's store (see client)
    mlflow.flush_async_logging()


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    flush(uri)
    client(uri).set_terminated(run_id, status=status)


def close_unfinished(uri: str, experiment_id: str, parent_run_id: str, status: str, reason: str) -> int:
    """Mark every child run of a sweep that is still RUNNING; returns how many were marked."""
    runs = find_runs(
        uri, experiment_id, f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'"
    )
    c = client(uri)
    for r in runs:
        c.set_tag(r.info.run_id, "end_reason", reason)
        c.set_terminated(r.info.run_id, status=status)
    return len(runs)


def status_name(run) -> str:
    s = run.info.status
    return s if isinstance(s, str) else RunStatus.to_string(s)


def export_runs(
    uri: str, experiment_id: str, parent_run_id: str, history_keys: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """A sweep's child runs as plain dicts: the file contract between the study and report stages.

    history holds every metric's per-epoch series (last value per step wins, so a retried epoch counts
    once); final holds each metric's last value.
    """
    c = client(uri)
    out = []
    for run in find_runs(uri, experiment_id, f"tags.mlflow.parentRunId = '{parent_run_id}'"):
        keys = list(run.data.metrics) if history_keys is None else [k for k in history_keys if k in run.data.metrics]
        history: dict[str, list[list[float]]] = {}
        for key in keys:
            by_step = {
                m.step: m.value for m in sorted(c.get_metric_history(run.info.run_id, key), key=lambda m: m.timestamp)
            }
            history[key] = [[step, by_step[step]] for step in sorted(by_step)]
        # MLflow's bookkeeping tags stay out; its provenance tags (mlflow.source.*) stay in.
        tags = {
            k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k.startswith("mlflow.source.git")
        }
        out.append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": status_name(run),
                "tags": tags,
                "params": dict(run.data.params),
                "final": dict(run.data.metrics),
                "history": history,
            }
        )
    out.sort(key=lambda r: (r["tags"].get("variant", ""), int(r["tags"].get("seed", 0)), r["run_name"] or ""))
    return out


def log_dataset(uri: str, run_id: str, name: str, sha256: str, source: str = "") -> None:
    """The run's training data as an MLflow dataset input (the UI's Dataset column). MLflow caps a digest at 36
    characters: a prefix of the prepared file's sha256; the whole hash is the run's `data_sha256` tag."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    c = client(uri)
    if any(i.dataset.name == name for i in c.get_run(run_id).inputs.dataset_inputs):
        return  # a resumed or retried trial logged it already
    dataset = Dataset(
        name=name,
        digest=sha256[:36],
        source_type="local",
        source=json.dumps({"uri": source or name}),
    )
    inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])]
    try:
        c.log_inputs(run_id, datasets=inputs)
    except Exception:
        # Concurrent trials of a sweep register the same data set at once; on SQLite the second insert of the
        # experiment's dataset row fails, and once it exists a second call reuses it.
        time.sleep(0.2)
        c.log_inputs(run_id, datasets=inputs)


def pip_requirements() -> list[str]:
    """What loading a logged model needs, pinned to this environment: given explicitly, so that MLflow does not
    infer them for every trial (a few seconds each)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("torch", "torchvision", "numpy", "mlflow", "dl-studies-pipeline"):
        try:
            reqs.append(f"{pkg}=={version(pkg).split('+')[0]}")
        except PackageNotFoundError:
            pass
    return reqs


def log_model(
    uri: str, run_id: str, model: Any, example: Any, experiment_id: str, name: str, tags: dict[str, str]
) -> str:
    """Log `model` (its current weights) as the run's MLflow logged model `name`, in the run's experiment (its
    Models tab), with a signature, an input example and `tags`; returns its model id (load it with
    `mlflow.pytorch.load_model(f"models:/{id}")`). `tags` name the source (`mlflow.source.name`): MLflow would
    otherwise name the process's main file, Ray's `default_worker.py`.

    Pickled, not exported: the families' forward passes return dicts (VAE) or own several networks (GAN), which a
    torch.export graph would not keep. Loading it imports this project's `pipeline` package."""
    import copy
    import logging

    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    client(uri)  # the fluent API's store is this client's store
    cpu = copy.deepcopy(model).cpu().eval()
    x = example.detach().cpu()
    with torch.no_grad():
        out = cpu(x)
    x_np = x.numpy()
    signature = infer_signature(x_np, out.numpy()) if isinstance(out, torch.Tensor) else infer_signature(x_np)
    # MLflow warns at every pickled model that pickle is unsafe to load from strangers: these are our own runs.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    # MLflow files a model logged by run id under the process's active experiment, Default (0) in a Ray worker,
    # not under the run's: MLFLOW_EXPERIMENT_ID is what it reads when no experiment was set in this process.
    with scoped_env(MLFLOW_EXPERIMENT_ID=experiment_id):
        info = mlflow.pytorch.log_model(
            cpu,
            name=name,
            run_id=run_id,
            tags=tags,
            signature=signature,
            input_example=x_np,
            pip_requirements=pip_requirements(),
            serialization_format="pickle",
        )
    return info.model_id


def store_answers(uri: str, timeout_s: float = 3.0) -> bool:
    """Whether the tracking store is there: a server answers its `/health`, a SQLite file or a file store exists.
    Other stores (a database server) are taken to be there: the calls on them fail on their own."""
    import urllib.request

    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as answer:
                return answer.status == 200
        except OSError:  # refused, reset, timed out, or an HTTP error status
            return False
    path = local_store_path(uri)
    if path is None:
        return True
    return path.is_file() if uri.startswith("sqlite:") else path.is_dir()


def close_sweep_runs(uri: str, experiment_id: str, sweep_id: str, status: str, reason: str) -> int:
    """Mark every trial run of a sweep still RUNNING, under any parent run; returns how many were marked."""
    runs = find_runs(uri, experiment_id, f"tags.sweep_id = '{sweep_id}' and attributes.status = 'RUNNING'")
    runs = [r for r in runs if r.data.tags.get("sweep_parent") != "true"]
    c = client(uri)
    for r in runs:
        c.set_tag(r.info.run_id, "end_reason", reason)
        c.set_terminated(r.info.run_id, status=status)
    return len(runs)


def delete_tag_if_set(uri: str, run_id: str, key: str) -> None:
    """Remove a run's tag if it has it (MLflow refuses to delete a tag that is not there)."""
    c = client(uri)
    if key in c.get_run(run_id).data.tags:
        c.delete_tag(run_id, key)
