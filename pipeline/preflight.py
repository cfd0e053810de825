"""Check the whole resolved configuration before DVC or a sweep touches anything.

    python -m pipeline.preflight [--params params.yaml] [--experiments experiments] [--study NAME ...]
                                 [--no-services] [--timeout S]

Every profile of params.yaml is checked, active or not, against every study it lists: the schema (as
`load_study` does), duplicate YAML keys, values a schema lets through (a boolean epoch count, an infinite
learning rate, a negative layer width, a malformed search distribution), whether the study's metric is one its
task reports and whether the model fits the data set. With services on, the Ray address, the resources one
trial needs, the MLflow tracking store and `ray.storage_path` are tried, each within `timeout_s`, and on a
joined cluster every node is asked to open the tracking store and the storage folder itself.

The first problem is a `ConfigError` (`FILE: KEY: MESSAGE`; exit code 2 from the CLI). Nothing is written: the
only files touched are probe files that exist for the duration of a check and are removed by it (a temporary
file in `ray.storage_path`, and on a joined cluster one next to a local tracking store).

Bounds chosen here (far above any study in experiments/, low enough to catch a typo'd exponent):
epochs and checkpoint_every <= 10,000; batch sizes <= 1,000,000; layer widths (`hidden`, `width`, `*_size`,
`*_dim`) 1..65,536 each; seeds and search.num_samples <= 1,000; every other integer model option >= 1 (each
counts layers, blocks or units); every float finite.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import typing
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import (
    Params,
    Study,
    StudySpec,
    TrainConfig,
    deep_merge,
    load_params,
    load_study,
    read_yaml,
    set_dotted,
    validate,
)
from pipeline.datainfo import DataInfo
from pipeline.entry import ArgParser, guarded
from pipeline.errors import ConfigError
from pipeline.paths import project_root
from pipeline.registry import Options

MAX_EPOCHS = 10_000
MAX_BATCH = 1_000_000
MAX_WIDTH = 65_536
MAX_SEEDS = 1_000
MAX_SAMPLES = 1_000
# A Python process that imports Ray takes seconds on a busy machine; each Ray probe process gets this much on
# top of timeout_s, so a slow import is not reported as a dead cluster.
PYTHON_START_S = 15.0
TRACKING_SCHEMES = ("sqlite:///", "file:", "http://", "https://")

# --------------------------------------------------------------------------- strict YAML


def read_yaml_strict(path: str | Path) -> dict[str, Any]:
    """`config.read_yaml` plus a refusal of duplicate mapping keys, which PyYAML silently resolves to the last."""
    data = read_yaml(path)  # its one-line errors for a missing file, bad bytes, bad YAML
    loader = yaml.SafeLoader(Path(path).read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicates(loader, node, [], str(path), set())
    finally:
        loader.dispose()
    return data


def _refuse_duplicates(loader: yaml.SafeLoader, node: yaml.Node, path: list[str], file: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias: its node was walked where its anchor is
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges; it is not a key of its own
                continue
            key = loader.construct_object(key_node, deep=True)
            dotted = [*path, str(key)]
            if key in keys:
                raise ConfigError(
                    f"duplicate key (line {key_node.start_mark.line + 1})", file=file, key=".".join(dotted)
                )
            keys.add(key)
            _refuse_duplicates(loader, value_node, dotted, file, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicates(loader, item, [*path, str(i)], file, seen)


# --------------------------------------------------------------------------- what tasks report, what data sets give

# Per task kind, the metric keys `fit` reports each epoch: `train_<k>` from the task's train_step sums and
# `val_<k>` from its batch_sums, both through its `finalize` (pipeline/tasks/*.py). tests/test_preflight.py
# recomputes them from the tasks themselves.
_TRAIN = ("loss", "grad_norm")
TASK_METRICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "classification": (_TRAIN, ("loss", "accuracy")),
    "binary": (_TRAIN, ("loss", "accuracy")),
    "regression": (_TRAIN, ("loss",)),
    "language_model": ((*_TRAIN, "perplexity"), ("loss", "accuracy", "perplexity")),
    "tagging": (_TRAIN, ("loss", "accuracy", "oov_accuracy", "oov_fraction")),
    "classification_f1": (_TRAIN, ("loss", "accuracy", "f1")),
    "autoencoder": (_TRAIN, ("loss", "recon_bce", "recon_error", "fd_pixels")),
    "vae": (_TRAIN, ("loss", "recon_bce", "recon_error", "kl", "elbo", "fd_pixels")),
    "gan": (
        ("loss", "d_loss", "d_accuracy", "g_loss", "grad_norm"),
        ("loss", "d_loss", "d_accuracy", "g_loss", "d_real", "d_fake", "fd_pixels"),
    ),
}
EPOCH_METRICS = ("epoch_seconds", "samples_per_s", "lr", "peak_memory_mb")  # pipeline.train.fit, every task

# Data sets declare neither their input kind nor their task in the registry (a DataInfo exists only after
# loading, and loading MNIST or a CoNLL-U file is what preflight must not need). A registry entry's meta
# `inputs`/`task` wins where a data set declares them; otherwise this table, read off each loader's DataInfo
# (tests/test_preflight.py checks it against every loader that runs offline): a rank-3 float tensor is an
# "image", rank 1 a "vector", long token ids "tokens"; "unit_image" is an image whose pixels stay in [0, 1].
DATA_KINDS: dict[str, tuple[str, str]] = {
    "digits": ("image", "classification"),
    "mnist": ("image", "classification"),
    "fashion_mnist": ("image", "classification"),
    "cifar10": ("image", "classification"),
    "unit_images": ("unit_image", "classification"),
    "synthetic": ("vector", "classification"),
    "poly_regression": ("vector", "regression"),
    "two_class": ("vector", "binary"),
    "grammar_lm": ("tokens", "language_model"),
    "text_lm": ("tokens", "language_model"),
    "grammar_pos": ("tokens", "tagging"),
    "conllu_pos": ("tokens", "tagging"),
    "grammar_sentiment": ("tokens", "classification"),
    "tsv_sentiment": ("tokens", "classification"),
}
# A model family's meta `inputs` (absent: "any", as tests/test_models.py reads it) -> the data it can read.
# Generative decoders model pixel intensities, so they need pixels left in [0, 1].
ACCEPTS: dict[str, set[str]] = {
    "image": {"image", "unit_image"},
    "vector": {"vector"},
    "any": {"image", "unit_image", "vector"},
    "tokens": {"tokens"},
    "generative": {"unit_image"},
}
# A family that fixes its own task needs data labelled for it; per-token data needs such a family.
TASK_NEEDS: dict[str, set[str]] = {
    "language_model": {"language_model"},
    "tagging": {"tagging"},
    "classification_f1": {"classification"},
}


def reported_metrics(kind: str) -> list[str] | None:
    """Every metric a trial of this task kind reports each epoch (None: a task kind this module does not know)."""
    if kind not in TASK_METRICS:
        return None
    train, val = TASK_METRICS[kind]
    return [*(f"val_{k}" for k in val), *(f"train_{k}" for k in train), *EPOCH_METRICS]


def data_kind(dataset: str) -> tuple[str, str] | None:
    """(input kind, task) of a registered data set, without loading it."""
    from pipeline.data import DATASETS

    meta = DATASETS.get(dataset).meta
    if "inputs" in meta and "task" in meta:
        return meta["inputs"], meta["task"]
    return DATA_KINDS.get(dataset)


def misfit(model: str, dataset: str) -> str | None:
    """Why `model` cannot train on `dataset`, or None if it can (or if nothing is known to judge by)."""
    from pipeline.models import MODELS

    kind = data_kind(dataset)
    meta = MODELS.get(model).meta
    takes = meta.get("inputs", "any")
    if kind is None or takes not in ACCEPTS:
        return None
    inputs, task = kind
    if inputs not in ACCEPTS[takes]:
        return f"it takes {takes} inputs and {dataset!r} gives {inputs} inputs"
    own = meta.get("task")
    if (own in TASK_NEEDS and task not in TASK_NEEDS[own]) or (task in TASK_NEEDS and own != task):
        return f"it is a {own or 'plain'} model and {dataset!r} is labelled for {task}"
    return None


def _task_kind(model: str, dataset: str) -> str | None:
    from pipeline.build import task_kind

    kind = data_kind(dataset)
    if kind is None:
        return None
    # task_kind reads only `.task` of the DataInfo; the shape is not known before the data is prepared
    return task_kind(model, DataInfo(input_shape=(), task=kind[1]))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- values a schema lets through


@dataclass
class Layer:
    """One layer of a study's resolution, and where its keys are written."""

    file: str
    prefix: str  # "", "defaults", "profiles.tiny"
    data: dict[str, Any]

    def key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key


_TRAIN_INTS = {
    "epochs": (1, MAX_EPOCHS),
    "batch_size": (1, MAX_BATCH),
    "eval_batch_size": (1, MAX_BATCH),
    "train_limit": (1, 10**9),
    "checkpoint_every": (0, MAX_EPOCHS),
}
_TRAIN_FLOATS = ("lr", "weight_decay", "momentum", "grad_clip")


def _is_width(key: str) -> bool:
    return key in ("hidden", "width", "char_hidden") or key.endswith(("_size", "_dim"))


def _got(v: Any) -> str:
    return f"{str(v).lower()}, a YAML boolean" if isinstance(v, bool) else repr(v)


def _int_in(v: Any, lo: int, hi: int, key: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"must be an integer from {lo:,} to {hi:,} (got {_got(v)})", key=key)


def _finite(v: Any, key: str) -> None:
    # YAML's `true` is an int subclass and `.inf`/`.nan` are floats: pydantic takes all three as numbers
    if isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
        raise ConfigError(f"must be a finite number (got {_got(v)})", key=key)


def _bool_field(options: type[Options], key: str) -> bool:
    field = options.model_fields.get(key)
    ann = getattr(field, "annotation", None)
    return ann is bool or bool in typing.get_args(ann)


def check_values(spec: dict[str, Any], *, model_options: type[Options] | None = None) -> None:
    """Values the pydantic schema lets through, in a (possibly partial) study spec; keys relative to it.

    `model_options`: the family's Options class, when the model is known, so a boolean given for a numeric
    option is refused (bool options such as batch_norm stay booleans)."""
    if "seeds" in spec:
        _int_in(spec["seeds"], 1, MAX_SEEDS, "seeds")
    search = spec.get("search")
    if isinstance(search, dict):
        if "num_samples" in search:
            _int_in(search["num_samples"], 1, MAX_SAMPLES, "search.num_samples")
        if isinstance(search.get("space"), dict):
            for axis, dist in search["space"].items():
                check_distribution(dist, f"search.space.{axis}")
    train = spec.get("train")
    if isinstance(train, dict):
        for k, v in train.items():
            if k in _TRAIN_INTS and v is not None:
                _int_in(v, *_TRAIN_INTS[k], key=f"train.{k}")
            elif k in _TRAIN_FLOATS and v is not None:
                _finite(v, f"train.{k}")
    model = spec.get("model")
    if isinstance(model, dict):
        for k, v in model.items():
            if k in ("name", "init"):
                continue
            if _is_width(k) and not (model_options is not None and _bool_field(model_options, k)):
                for x in v if isinstance(v, list) else [v]:
                    if x is not None:
                        _int_in(x, 1, MAX_WIDTH, f"model.{k}")
            elif isinstance(v, bool):
                if model_options is not None and k in model_options.model_fields and not _bool_field(model_options, k):
                    raise ConfigError(f"must be a number (got {_got(v)})", key=f"model.{k}")
            elif isinstance(v, int):
                _int_in(v, 1, 10**9, f"model.{k}")
            elif isinstance(v, float):
                _finite(v, f"model.{k}")
    dataset = spec.get("dataset")
    if isinstance(dataset, dict):
        for k, v in dataset.items():
            for x in v if isinstance(v, list) else [v]:
                if isinstance(x, float):
                    _finite(x, f"dataset.{k}")


def check_distribution(dist: Any, key: str) -> None:
    """A search-space axis: a non-empty list, {choice|grid: [...]} non-empty, or a well-formed range."""
    if isinstance(dist, list):
        if not dist:
            raise ConfigError("needs at least one value", key=key)
        return
    if not (isinstance(dist, dict) and len(dist) == 1):
        return  # config.Study.space_values names the allowed forms
    ((kind, args),) = dist.items()
    if kind in ("choice", "grid"):
        if not (isinstance(args, list) and args):
            raise ConfigError(f"{kind} needs a non-empty list of values", key=key)
        return
    if kind not in ("uniform", "loguniform", "randint"):
        return
    pair = isinstance(args, list) and len(args) == 2
    if kind == "randint":
        rule = "randint needs [low, high] with integers low < high"
        ok = pair and all(isinstance(a, int) and not isinstance(a, bool) for a in args) and args[0] < args[1]
    else:
        rule = f"{kind} needs [low, high] with finite low < high" + (" and low > 0" if kind == "loguniform" else "")
        numbers = pair and all(
            isinstance(a, int | float) and not isinstance(a, bool) and math.isfinite(a) for a in args
        )
        ok = numbers and args[0] < args[1] and (kind != "loguniform" or args[0] > 0)
    if not ok:
        raise ConfigError(f"{rule} (got {args!r})", key=key)


def _has(d: Any, parts: list[str]) -> bool:
    """Whether a nested dict holds a dotted key; dict keys may hold dots themselves (search.space.train.lr)."""
    if not parts:
        return True
    if not isinstance(d, dict):
        return False
    return any(".".join(parts[:i]) in d and _has(d[".".join(parts[:i])], parts[i:]) for i in range(len(parts), 0, -1))


def origin(layers: Sequence[Layer], key: str) -> Layer | None:
    """The last layer that writes `key` (or the longest part of it that any layer writes)."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        for layer in reversed(layers):
            if _has(layer.data, parts[:n]):
                return layer
    return None


def _blame(e: ConfigError, layers: Sequence[Layer]) -> ConfigError:
    """An error load_study puts on the study file, moved to the layer that writes the key (params.yaml's defaults or
    profile, the study's own profile)."""
    if e.key and e.file == layers[1].file:
        layer = origin(layers, e.key)
        if layer is not None and layer is not layers[1]:
            return ConfigError(e.message, file=layer.file, key=layer.key(e.key))
    return e


# --------------------------------------------------------------------------- the configuration


def check_params_layers(params: Params, file: str) -> None:
    """`defaults` and each `profiles.<P>` on their own, so a bad key there is blamed on params.yaml."""
    dummy = {"question": "", "model": {}, "dataset": {}}
    for prefix, data in [("defaults", params.defaults), *((f"profiles.{p}", o) for p, o in params.profiles.items())]:
        validate(StudySpec, deep_merge(dummy, data), file=file, prefix=prefix)
        if isinstance(data.get("train"), dict):
            validate(TrainConfig, data["train"], file=file, prefix=f"{prefix}.train")
        try:
            check_values(data)
        except ConfigError as e:
            raise e.located(file=file, key_prefix=prefix) from None


def check_study_files(params: Params, experiments: Path, file: str) -> None:
    """Every `studies` entry names an existing experiments/<name>.yaml, once."""
    present = sorted(p.stem for p in experiments.glob("*.yaml"))
    for i, name in enumerate(params.studies):
        if not (experiments / f"{name}.yaml").is_file():
            raise ConfigError(
                f"{experiments / f'{name}.yaml'} does not exist; studies there: {', '.join(present) or 'none'}",
                file=file,
                key=f"studies.{i}",
            )
        if name in params.studies[:i]:
            raise ConfigError(f"{name!r} is listed twice", file=file, key=f"studies.{i}")


def _points(study: Study) -> Iterator[tuple[str | None, Any]]:
    """The base (None) and every representative value of every axis (a range's two ends)."""
    yield None, None
    for axis in study.spec.search.space:
        for value in study.space_values(axis):
            yield axis, value


def check_trials(study: Study, layers: Sequence[Layer]) -> None:
    """Values, the model-data fit and the metrics, on the base trial and every value of every axis."""
    from pipeline.models import MODELS

    file, seed = str(study.path), study.seeds[0]
    for axis, value in _points(study):
        point = {} if axis is None else {axis: value}
        d = study.base_trial_dict()
        for k, v in point.items():
            set_dotted(d, k, v)
        try:
            name = d["model"].get("name") if isinstance(d["model"], dict) else None
            options = MODELS.get(name).options if name in MODELS else None
            check_values(d, model_options=options)
            trial = study.resolve(point, seed)
            why = misfit(trial.model.name, trial.dataset.name)
            if why:
                fits = [m for m in MODELS.names() if misfit(m, trial.dataset.name) is None]
                raise ConfigError(
                    f"model {trial.model.name!r} does not fit data set {trial.dataset.name!r}: {why}; "
                    f"models that fit it: {', '.join(fits) or 'none'}",
                    key="model.name",
                )
        except ConfigError as e:
            if axis is None:
                raise _blame(e.located(file=file), layers) from None
            raise ConfigError(
                f"search value {value!r}: {e.key}: {e.message}", file=file, key=f"search.space.{axis}"
            ) from None
        kind = _task_kind(trial.model.name, trial.dataset.name)
        allowed = reported_metrics(kind) if kind else None
        if allowed is None:
            continue
        where = f"model {trial.model.name!r} on {trial.dataset.name!r}"
        if axis is not None:
            where += f", search value {axis}={value!r}"
        wanted = [("metric", study.spec.metric)]
        if study.spec.target is not None:
            wanted.append(("target.metric", study.spec.target.metric))
        for key, metric in wanted:
            if metric not in allowed:
                layer = origin(layers, key) or layers[1]
                raise ConfigError(
                    f"{metric!r} is not reported by task {kind} ({where}); allowed: {', '.join(allowed)}",
                    file=layer.file,
                    key=layer.key(key),
                )


def check_study(path: Path, params: Params, profile: str, file: str) -> tuple[Study, list[Layer]]:
    """One study in one profile: strict YAML, values, schema (load_study) and every trial. Returns the study
    and its layers (defaults, the study, params.yaml's profile, the study's profile)."""
    raw = read_yaml_strict(path)
    own = raw.get("profiles", {})
    layers = [
        Layer(file, "defaults", params.defaults),
        Layer(str(path), "", {k: v for k, v in raw.items() if k != "profiles"}),
        Layer(file, f"profiles.{profile}", params.profiles.get(profile, {})),
        Layer(str(path), f"profiles.{profile}", own.get(profile, {}) if isinstance(own, dict) else {}),
    ]
    for layer in layers[1::2]:  # params.yaml's layers were checked on their own
        try:
            check_values(layer.data)
        except ConfigError as e:
            raise e.located(file=layer.file, key_prefix=layer.prefix or None) from None
    try:
        study = load_study(path, params.model_copy(update={"profile": profile}), file)
    except ConfigError as e:
        raise _blame(e, layers) from None
    check_trials(study, layers)
    return study, layers


# --------------------------------------------------------------------------- services


def _env_note(env: str) -> str:
    """Where a setting came from when the environment overrides params.yaml."""
    return f" (from {env})" if os.environ.get(env) else ""


def _sqlite_path(uri: str) -> Path:
    return Path(urllib.parse.unquote(uri[len("sqlite:///") :]))


def _file_path(uri: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))


def _sqlite_problem(path: Path) -> str | None:
    """Why an existing file is not a readable SQLite database (opened read-only: nothing is created)."""
    if path.stat().st_size == 0:
        return None  # MLflow lays its schema into an empty file
    try:
        with path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return "it is not an SQLite database"
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except (OSError, sqlite3.Error) as e:
        return f"it cannot be read: {e}"
    return None


def check_tracking(uri: str, timeout_s: float, *, file: str, source: str = "") -> None:
    """The tracking store (an URI resolved like pipeline.tracking) opens without anything being created."""

    def refuse(message: str) -> ConfigError:
        return ConfigError(message + source, file=file, key="mlflow.tracking_uri")

    if uri.startswith(("sqlite:///", "file:")):
        path = _sqlite_path(uri) if uri.startswith("sqlite:") else _file_path(uri)
        if str(path) in ("", ":memory:", "/:memory:"):
            raise refuse(f"{uri} is an in-memory store: trials in other processes would not see it")
        if not path.parent.is_dir():
            raise refuse(f"folder {path.parent} does not exist ({uri}); create it or fix the path")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise refuse(f"folder {path.parent} is not writable ({uri})")
        if uri.startswith("sqlite:") and path.exists():
            problem = "it is a folder" if path.is_dir() else _sqlite_problem(path)
            if problem:
                raise refuse(f"{path} cannot be the tracking store: {problem}")
        if uri.startswith("file:") and path.exists() and not path.is_dir():
            raise refuse(f"{path} is a file; a file: tracking store is a folder")
        return
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r:
                if r.status == 200:
                    check_server_credentials(uri, timeout_s, refuse)
                    return
                reason = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            reason = f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            reason = str(getattr(e, "reason", e))
        raise refuse(f"no MLflow server answers at {url} within {timeout_s:g} s ({reason})")
    scheme = uri.split(":", 1)[0] if ":" in uri else uri
    raise refuse(f"unsupported tracking store scheme {scheme!r} ({uri}); allowed: {', '.join(TRACKING_SCHEMES)}")


def check_server_credentials(uri: str, timeout_s: float, refuse: typing.Callable[[str], ConfigError]) -> None:
    """A server behind MLflow's basic-auth app answers /health to anyone but the API only to its users: try one
    read with the credentials MLflow's client would send (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)."""
    import base64

    req = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user is not None and password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s):
            return
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            who = f"user {user!r}" if user else "no credentials"
            raise refuse(
                f"the MLflow server at {uri} refuses {who} (HTTP {e.code}); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to an account of its basic-auth app (docs/cluster.md)"
            ) from None
        raise refuse(f"the MLflow server at {uri} fails its API (HTTP {e.code})") from None
    except (OSError, ValueError) as e:
        raise refuse(f"the MLflow server at {uri} does not answer its API within {timeout_s:g} s ({e})") from None


def _remote(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


def storage_folder(storage: str) -> Path:
    """The folder a storage path lives in: the path itself if it exists, else its nearest existing parent."""
    path = _file_path(storage) if storage.startswith("file://") else Path(storage)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_storage(storage: str, *, file: str) -> None:
    """`ray.storage_path` can be written: the folder (or its nearest existing parent), without creating it."""
    if _remote(storage):
        return  # s3://, gs://...: Ray's pyarrow filesystem owns those, with credentials preflight has no part in
    folder = storage_folder(storage)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder (storage path {storage})", file=file, key="ray.storage_path")
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError("no write permission")
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".preflight-"):
            pass
    except OSError as e:
        raise ConfigError(
            f"{folder} is not writable (storage path {storage}): {e.strerror or e}", file=file, key="ray.storage_path"
        ) from None


def ray_address(params: Params) -> str | None:
    """The cluster a sweep joins (as pipeline.sweep.init_ray picks it); None: a local runtime."""
    address = params.ray.address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def check_ray_address(address: str, timeout_s: float, *, file: str) -> None:
    """A TCP connect to the address's host:port within the timeout (a dead port fails at once)."""
    if address == "auto":
        return  # the address file of a cluster started here; the Ray probe itself tries it
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    source = _env_note("RAY_ADDRESS") if os.environ.get("RAY_ADDRESS") == address else ""
    if not host or not port.isdigit():
        raise ConfigError(
            f"{address!r} is not host:port, ray://host:port or auto{source}", file=file, key="ray.address"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(
            f"no Ray cluster answers at {address} within {timeout_s:g} s ({e.strerror or e}){source}",
            file=file,
            key="ray.address",
        ) from None


# Runs in its own process (ray.init on a wrong address waits far longer than any timeout, and a connected
# driver would outlive preflight's answer). Each node task is pinned to its node and asks that node, not the
# driver, whether the tracking store and the storage folder are the driver's.
_RAY_PROBE = r"""
import json, os, sys
args = json.loads(sys.argv[1])
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def probe(a, node_id):
    import os, sqlite3, urllib.request
    from pathlib import Path

    def sees_token(folder):
        try:
            with open(os.path.join(folder, ".preflight-" + a["token"])) as f:
                return f.read() == a["token"]
        except OSError:
            return False

    out = {"tracking": None, "storage": None}
    t = a["tracking"]
    if t["kind"] == "http":
        try:
            with urllib.request.urlopen(t["url"], timeout=a["timeout"]) as r:
                if r.status != 200:
                    out["tracking"] = "its /health answers HTTP %d" % r.status
        except Exception as e:
            out["tracking"] = "%s" % getattr(e, "reason", e)
    elif t["kind"] in ("sqlite", "file"):
        path = t["path"]
        if not sees_token(t["folder"]):
            out["tracking"] = "its %s is not the driver's folder" % t["folder"]
        elif t["kind"] == "sqlite" and t["exists"]:
            try:
                if os.path.getsize(path) == 0 and t["size"] > 0:
                    raise OSError("the file is empty")
                con = sqlite3.connect(Path(path).as_uri() + "?mode=ro", uri=True, timeout=2)
                try:
                    names = {r[0] for r in con.execute("SELECT name FROM experiments")} if t["experiments"] else set()
                finally:
                    con.close()
                missing = sorted(set(t["experiments"]) - names)
                if missing:
                    out["tracking"] = "its copy lacks the experiment %r" % missing[0]
            except (OSError, sqlite3.Error) as e:
                out["tracking"] = "it cannot open %s: %s" % (path, e)
    s = a["storage"]
    if s is not None:
        if not sees_token(s):
            out["storage"] = "its %s is not the driver's folder" % s
        else:
            own = os.path.join(s, ".preflight-%s-%s" % (a["token"], node_id[:12]))
            try:
                with open(own, "w") as f:
                    f.write(node_id)
                with open(own) as f:
                    if f.read() != node_id:
                        raise OSError("a file written there reads back different")
            except OSError as e:
                out["storage"] = "it cannot write there: %s" % e
            finally:
                try:
                    os.remove(own)
                except OSError:
                    pass
    return out


ray.init(address=args["address"], logging_level="ERROR", log_to_driver=False)
print("PREFLIGHT-CONNECTED", flush=True)
nodes = [n for n in ray.nodes() if n.get("Alive")]
res = ray.cluster_resources()
out = {
    "CPU": res.get("CPU", 0.0),
    "GPU": res.get("GPU", 0.0),
    "node_CPU": max([n["Resources"].get("CPU", 0.0) for n in nodes] or [0.0]),
    "node_GPU": max([n["Resources"].get("GPU", 0.0) for n in nodes] or [0.0]),
    "nodes": [],
}
task = ray.remote(probe)
refs = [
    task.options(
        num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
    ).remote(args, n["NodeID"])
    for n in nodes
]
ready, _ = ray.wait(refs, num_returns=len(refs), timeout=args["wait"])
for n, ref in zip(nodes, refs):
    row = {"id": n["NodeID"], "ip": n.get("NodeManagerAddress", "")}
    if ref not in ready:
        row["error"] = "it did not answer within %g s" % args["wait"]
    else:
        try:
            row.update(ray.get(ref))
        except Exception as e:
            row["error"] = "its probe failed: %s" % str(e).splitlines()[0]
    out["nodes"].append(row)
print("PREFLIGHT " + json.dumps(out), flush=True)
sys.stderr.flush()
os._exit(0)  # the driver's teardown costs seconds and proves nothing
"""


@dataclass
class ProbeAnswer:
    result: dict[str, Any] | None  # the probe's JSON, None if it gave none
    connected: bool  # ray.init returned
    why: str  # when result is None: its last output line, or the deadline it missed


def _run_ray_probe(payload: dict[str, Any], connect_s: float, total_s: float) -> ProbeAnswer:
    """Run _RAY_PROBE: `connect_s` for Python, Ray's import and ray.init, `total_s` for all of it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _RAY_PROBE, json.dumps(payload)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe, read as it comes: a full second pipe would stall the probe
        start_new_session=True,  # so a timeout ends it and anything it started
    )
    assert proc.stdout is not None
    fd, out, t0 = proc.stdout.fileno(), b"", time.monotonic()
    try:
        while True:
            connected = b"PREFLIGHT-CONNECTED" in out
            left = (total_s if connected else connect_s) - (time.monotonic() - t0)
            if left <= 0:
                os.killpg(proc.pid, signal.SIGKILL)
                return ProbeAnswer(None, connected, f"no answer within {total_s if connected else connect_s:g} s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                out += chunk
    finally:
        proc.stdout.close()
        proc.wait()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("PREFLIGHT {"):
            return ProbeAnswer(json.loads(line[len("PREFLIGHT ") :]), True, "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("PREFLIGHT")]
    return ProbeAnswer(None, "PREFLIGHT-CONNECTED" in text, lines[-1] if lines else f"exit code {proc.returncode}")


def _node(row: dict[str, Any]) -> str:
    return f"node {row['ip'] or '?'} (id {row['id'][:12]})"


def check_cluster_nodes(
    params: Params,
    uri: str,
    storage: str,
    timeout_s: float,
    *,
    address: str | None = None,
    experiments: Sequence[str] = (),
    file: str = "params.yaml",
) -> dict[str, float]:
    """Every alive node of the joined cluster opens the tracking store (and the studies' experiments in it) and
    writes and reads a file in the storage folder, as the driver sees them. Returns the cluster's CPU and GPU
    totals and its largest node's (`node_CPU`, `node_GPU`).

    For a local store (sqlite, file:) and for the storage folder, the driver leaves a probe file that each node
    must find: that tells a shared folder from a same-named copy. The probe files are removed afterwards."""
    address = address or ray_address(params)
    if not address:
        raise ValueError("check_cluster_nodes needs a Ray address")
    token = uuid.uuid4().hex
    tracking: dict[str, Any] = {"kind": "none"}
    if uri.startswith(("http://", "https://")):
        tracking = {"kind": "http", "url": uri.rstrip("/") + "/health"}
    elif uri.startswith(("sqlite:///", "file:")):
        path = _sqlite_path(uri) if uri.startswith("sqlite:") else _file_path(uri)
        exists = path.is_file()
        tracking = {
            "kind": "sqlite" if uri.startswith("sqlite:") else "file",
            "path": str(path),
            "folder": str(path.parent if uri.startswith("sqlite:") else storage_folder(str(path))),
            "exists": exists,
            "size": path.stat().st_size if exists else 0,
            "experiments": _local_experiments(path, experiments) if exists and uri.startswith("sqlite:") else [],
        }
    folder = None if _remote(storage) else str(storage_folder(storage))
    probes = {Path(f) / f".preflight-{token}" for f in (tracking.get("folder"), folder) if f}
    payload = {
        "address": address,
        "token": token,
        "tracking": tracking,
        "storage": folder,
        "timeout": timeout_s,
        "wait": timeout_s + PYTHON_START_S,  # a node starts a worker process first
    }
    try:
        for p in probes:
            p.write_text(token)
        answer = _run_ray_probe(payload, timeout_s + PYTHON_START_S, 2 * (timeout_s + PYTHON_START_S) + 10)
    finally:
        for p in probes:
            p.unlink(missing_ok=True)
    source = _env_note("RAY_ADDRESS") if os.environ.get("RAY_ADDRESS") == address else ""
    result = answer.result
    if result is None:
        if answer.connected:
            message = f"the Ray cluster at {address} took a driver but did not answer: {answer.why}"
        else:
            message = f"no Ray cluster answers at {address}: a Ray driver could not connect ({answer.why})"
        raise ConfigError(message + source, file=file, key="ray.address")
    rows = result["nodes"]
    for row in rows:
        if "error" in row:
            raise ConfigError(f"{_node(row)}: {row['error']}{source}", file=file, key="ray.address")
    tsource = _env_note("MLFLOW_TRACKING_URI")
    for row in rows:
        if row["tracking"]:
            if tracking["kind"] == "http":
                what = f"cannot reach the tracking server {uri} ({row['tracking']})"
            else:
                local = "a sqlite file" if tracking["kind"] == "sqlite" else "a file: store"
                what = f"cannot open the tracking store {uri} ({row['tracking']}: {local} is local to one machine)"
            raise ConfigError(
                f"{_node(row)} {what}; use an MLflow server reachable from every node (docs/cluster.md){tsource}",
                file=file,
                key="mlflow.tracking_uri",
            )
    for row in rows:
        if row["storage"]:
            raise ConfigError(
                f"{_node(row)} cannot use {folder} ({row['storage']}); ray.storage_path must be a shared folder, "
                "the same on every node (docs/cluster.md)",
                file=file,
                key="ray.storage_path",
            )
    return {k: float(result[k]) for k in ("CPU", "GPU", "node_CPU", "node_GPU")}


def _local_experiments(db: Path, names: Sequence[str]) -> list[str]:
    """Which of the studies already have an experiment in a local SQLite store (read-only)."""
    if not names or db.stat().st_size == 0:
        return []
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=2)
        try:
            rows = con.execute("SELECT name FROM experiments").fetchall()
        finally:
            con.close()
    except sqlite3.Error:  # no experiments table yet
        return []
    return sorted({r[0] for r in rows} & set(names))


@dataclass
class Need:
    """What one trial of one study asks of the cluster, and where each number is written."""

    workers: tuple[int, str, str]  # value, file, key
    cpus: tuple[float, str, str]
    gpus: tuple[float, str, str]
    where: str  # "study activations, profile tiny"


def trial_need(study: Study, layers: Sequence[Layer], file: str) -> Need:
    res, ray_cfg = study.spec.resources, study.params.ray

    def pick(name: str, value: float | None, default: float) -> tuple[Any, str, str]:
        layer = origin(layers, f"resources.{name}") if value is not None else None
        if layer is None:
            return default, file, f"ray.{name}"
        return value, layer.file, layer.key(f"resources.{name}")

    return Need(
        pick("workers_per_trial", res.workers_per_trial, ray_cfg.workers_per_trial),
        pick("cpus_per_worker", res.cpus_per_worker, ray_cfg.cpus_per_worker),
        pick("gpus_per_worker", res.gpus_per_worker, ray_cfg.gpus_per_worker),
        f"study {study.name}, profile {study.params.profile}",
    )


def local_resources(params: Params) -> dict[str, float]:
    """What a local Ray runtime started by a sweep gets (pipeline.ray_session.start_local_runtime)."""
    import torch

    cpus = params.ray.num_cpus or os.cpu_count() or 1
    gpus = params.ray.num_gpus if params.ray.num_gpus is not None else torch.cuda.device_count()
    return {"CPU": float(cpus), "GPU": float(gpus), "node_CPU": float(cpus), "node_GPU": float(gpus)}


def check_resources(need: Need, have: dict[str, float], where: str, node_where: str) -> None:
    """One trial's workers fit: each on one node (`node_where` names the largest), all of them in `where`."""
    (w, wfile, wkey), (c, cfile, ckey), (g, gfile, gkey) = need.workers, need.cpus, need.gpus
    for unit, per, pfile, pkey in (("CPU", c, cfile, ckey), ("GPU", g, gfile, gkey)):
        if per > have[f"node_{unit}"]:
            raise ConfigError(
                f"one worker needs {per:g} {unit}; {node_where} has {have[f'node_{unit}']:g} ({need.where})",
                file=pfile,
                key=pkey,
            )
        if w * per > have[unit]:
            raise ConfigError(
                f"one trial needs {w} workers x {per:g} {unit} = {w * per:g} {unit}; {where} has {have[unit]:g} "
                f"({need.where})",
                file=wfile,
                key=wkey,
            )


# --------------------------------------------------------------------------- all of it


def preflight(
    params_file: str | Path,
    experiments: str | Path,
    studies: list[str] | None = None,
    *,
    services: bool = True,
    timeout_s: float = 10,
) -> None:
    """Check params.yaml and the studies in every profile, then (with `services`) Ray, MLflow and storage.

    Raises ConfigError on the first problem; writes nothing (see the module docstring for its probe files)."""
    file = str(params_file)
    read_yaml_strict(params_file)
    params = load_params(params_file)
    experiments = Path(experiments)
    if studies is None:  # asked about given studies (one stage's), the rest of params.yaml's list is not theirs
        check_study_files(params, experiments, file)
    check_params_layers(params, file)
    names = [Path(s).stem if s.endswith(".yaml") else s for s in studies] if studies is not None else params.studies
    # the active profile first: an error there is the one a run would meet
    profiles = [params.profile, *(p for p in params.profiles if p != params.profile)]
    needs: list[Need] = []
    for profile in profiles:
        for name in names:
            path = experiments / f"{name}.yaml"
            try:
                study, layers = check_study(path, params, profile, file)
            except ConfigError as e:
                if profile == params.profile or (e.key or "").startswith(f"profiles.{profile}"):
                    raise
                raise ConfigError(f"{e.message} (profile {profile})", file=e.file, key=e.key) from None
            needs.append(trial_need(study, layers, file))
    if services:
        check_services(params, file, needs, names, timeout_s)


def check_services(params: Params, file: str, needs: Sequence[Need], names: Sequence[str], timeout_s: float) -> None:
    """Tracking store, storage folder, Ray address, resources, and on a joined cluster every node."""
    from pipeline.tracking import resolve_tracking_uri

    root = project_root()
    uri = resolve_tracking_uri(params.mlflow.tracking_uri, root)
    check_tracking(uri, timeout_s, file=file, source=_env_note("MLFLOW_TRACKING_URI"))
    storage = params.ray.storage_path
    storage = storage if Path(storage).is_absolute() or "://" in storage else str(root / storage)
    check_storage(storage, file=file)
    address = ray_address(params)
    if address:
        check_ray_address(address, timeout_s, file=file)
        have = check_cluster_nodes(params, uri, storage, timeout_s, address=address, experiments=names, file=file)
        where = f"the cluster at {address}"
        node_where = f"the largest node of {where}"
    else:
        have, where = local_resources(params), "this machine"
        node_where = where
    for need in needs:
        check_resources(need, have, where, node_where)


@guarded
def main(argv: list[str] | None = None) -> int:
    ap = ArgParser(prog="python -m pipeline.preflight", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--experiments", default="experiments", help="the folder of <study>.yaml files")
    ap.add_argument("--study", nargs="+", action="extend", help="only these studies (default: params.yaml's list)")
    ap.add_argument("--no-services", action="store_true", help="check the files only: no Ray, MLflow or storage")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds each service gets to answer")
    args = ap.parse_args(argv)
    preflight(args.params, args.experiments, args.study, services=not args.no_services, timeout_s=args.timeout)
    params = load_params(args.params)
    n = len(args.study) if args.study is not None else len(params.studies)
    skipped = " (services not checked)" if args.no_services else ""
    print(f"preflight ok: {n} studies, profiles {', '.join(params.profiles)}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
