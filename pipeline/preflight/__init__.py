"""Check the whole resolved configuration before DVC or a sweep touches anything (`python -m pipeline.preflight`).

The schema (pipeline.config) and the registries know what a value may be; this package checks what crosses files:
every profile of params.yaml, active or not, against every study it lists (`load_study` in each profile), with each
error blamed on the file and key that wrote the value (params.yaml's `defaults` or profile, the study, the study's
own profile); duplicate YAML keys, which PyYAML resolves silently; on every representative trial, whether the model
fits the data set and the study's metric is one its task reports; the study's `report:` names, where the caller
knows the report's sections. With services on, `services` tries the tracking store, the storage folder, the Ray
address and one trial's resources, each within `timeout_s`.

The first problem is a `ConfigError` (`FILE: KEY: MESSAGE`; exit code 2 from the command line). Nothing is written
(see `services` for its probe files).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import (
    Params,
    Study,
    StudySpec,
    TrainConfig,
    TrialConfig,
    deep_merge,
    load_params,
    load_study,
    read_yaml,
    spec_as_written,
    validate,
)
from pipeline.errors import ConfigError
from pipeline.preflight.services import PYTHON_START_S, Need, check_services, check_tracking

__all__ = ["PYTHON_START_S", "ReportCheck", "check_tracking", "preflight", "read_yaml_strict", "reported_metrics"]

# A study's `report:` names and its file -> a ConfigError keyed `report.<i>` for a name that is no report section
# (pipeline.sections.check_sections). Passed in by whoever may import the sections (the specs stage, `pipeline run`,
# `python -m pipeline.preflight`): the study stages run this package too, and a change to a section must not re-run
# their sweeps through dvc.yaml's deps.
ReportCheck = Callable[[Sequence[str], str], None]
EPOCH_METRICS = ("epoch_seconds", "samples_per_s", "lr", "peak_memory_mb")  # pipeline.train.fit's, for every task

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


# --------------------------------------------------------------------------- which file wrote a key


@dataclass
class Layer:
    """One layer of a study's resolution, and where its keys are written."""

    file: str
    prefix: str  # "", "defaults", "profiles.tiny"
    data: dict[str, Any]

    def key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key


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


def reported_metrics(kind: str) -> list[str]:
    """Every metric a trial of this task kind reports each epoch, as its registry entry declares them."""
    from pipeline.tasks import TASKS

    meta = TASKS.get(kind).meta
    return [*(f"val_{k}" for k in meta["val"]), *(f"train_{k}" for k in meta["train"]), *EPOCH_METRICS]


def check_trial(study: Study, trial: TrialConfig) -> None:
    """One resolved trial against the registries: the model fits the data set (what it reads, what its loss
    reads), and the study's metric and target metric are ones the trial's task reports."""
    from pipeline.build import misfit, task_kind
    from pipeline.models import MODELS

    model, dataset = trial.model.name, trial.dataset.name
    why = misfit(model, dataset)
    if why:
        fits = [m for m in MODELS.names() if misfit(m, dataset) is None]
        raise ConfigError(
            f"model {model!r} does not fit data set {dataset!r}: {why}; "
            f"models that fit it: {', '.join(fits) or 'none'}",
            key="model.name",
        )
    kind = task_kind(model, dataset)
    allowed = reported_metrics(kind)
    target = study.spec.target
    for key, metric in [("metric", study.spec.metric), *([("target.metric", target.metric)] if target else [])]:
        if metric not in allowed:
            raise ConfigError(
                f"{metric!r} is not reported by task {kind} (model {model!r} on {dataset!r}); "
                f"allowed: {', '.join(allowed)}",
                key=key,
            )


def check_study(
    path: Path, params: Params, profile: str, file: str, check_report: ReportCheck | None = None
) -> tuple[Study, list[Layer]]:
    """One study in one profile: strict YAML, the schema and every representative trial (load_study, with
    `check_trial`), its report sections. Returns the study and its layers (defaults, the study, params.yaml's
    profile, the study's profile)."""
    raw = read_yaml_strict(path)
    own = raw.get("profiles", {})
    layers = [
        Layer(file, "defaults", params.defaults),
        Layer(str(path), "", {k: v for k, v in raw.items() if k != "profiles"}),
        Layer(file, f"profiles.{profile}", params.profiles.get(profile, {})),
        Layer(str(path), f"profiles.{profile}", own.get(profile, {}) if isinstance(own, dict) else {}),
    ]
    try:  # load_study's first step, on its own: a value there is the study's or the defaults', whatever overrides it
        spec_as_written(path, raw, params)
    except ConfigError as e:
        raise _blame(e, layers[:2]) from None
    try:
        study = load_study(path, params.model_copy(update={"profile": profile}), file, check=check_trial)
        if check_report is not None:
            check_report(study.spec.report, str(path))
    except ConfigError as e:
        raise _blame(e, layers) from None
    return study, layers


def trial_need(study: Study, layers: Sequence[Layer], file: str) -> Need:
    """What one trial asks of the machine or cluster, each number with the file and key that set it."""
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


# --------------------------------------------------------------------------- all of it


def preflight(
    params_file: str | Path,
    experiments: str | Path,
    studies: list[str] | None = None,
    *,
    services: bool = True,
    timeout_s: float = 10,
    check_report: ReportCheck | None = None,
) -> None:
    """Check params.yaml and the studies in every profile, then (with `services`) Ray, MLflow and storage.

    `check_report` checks each study's `report:` names (None: the report stage will). Raises ConfigError on the
    first problem; writes nothing."""
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
                study, layers = check_study(path, params, profile, file, check_report)
            except ConfigError as e:
                if profile == params.profile or (e.key or "").startswith(f"profiles.{profile}"):
                    raise
                raise ConfigError(f"{e.message} (profile {profile})", file=e.file, key=e.key) from None
            needs.append(trial_need(study, layers, file))
    if services:
        check_services(params, file, needs, names, timeout_s)
