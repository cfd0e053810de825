"""Typed configuration: `params.yaml` (global defaults and profiles) and `experiments/<study>.yaml`.

YAML holds values only; the pydantic models here validate them and reject unknown keys. A study's
trials are resolved in layers, later ones winning:

    params.defaults  <-  experiments/<study>.yaml  <-  params.profiles[<profile>]
                     <-  the study's own profiles[<profile>]  <-  one point of the search space

Every error is a `ConfigError` naming the file, the dotted key and what is allowed. The bounds below are far above
any study in experiments/ and low enough to catch a typo'd exponent.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PydanticUserError,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.errors import ConfigError
from pipeline.registry import MAX_COUNT, Float

MAX_EPOCHS = 10_000
MAX_BATCH = 1_000_000
MAX_SEEDS = 1_000
MAX_SAMPLES = 1_000


class Strict(BaseModel):
    # Unknown keys are errors, and so are YAML's .inf and .nan where a number is asked for. Numbers are typed
    # StrictInt or registry.Float, which YAML's true cannot pass as.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------- params.yaml


class DataRoot(Strict):
    root: str = "data/raw"  # torchvision data sets live under <root>/<Class>/raw
    download: StrictBool = False


class MlflowConfig(Strict):
    tracking_uri: str = "sqlite:///mlflow.db"  # relative paths are relative to the project root
    async_logging: StrictBool = True


class RayConfig(Strict):
    address: str | None = None  # None: RAY_ADDRESS if set, else a local runtime
    num_cpus: StrictInt | None = Field(None, ge=1)  # local runtime only
    num_gpus: StrictInt | None = Field(None, ge=0)
    workers_per_trial: StrictInt = Field(1, ge=1)
    cpus_per_worker: Float = Field(1, gt=0)
    gpus_per_worker: Float = Field(0, ge=0)
    max_concurrent_trials: StrictInt | None = Field(None, ge=1)  # None: derived from the cluster's resources
    storage_path: str = "ray_results"  # Tune/Train results and checkpoints; a shared path on a cluster
    max_failures: StrictInt = Field(2, ge=0)  # retries of a trial (from its last checkpoint) after a crash


class Params(Strict):
    profile: str = "default"
    seed: StrictInt = 0
    studies: list[str] = Field(default_factory=list)
    max_seeds: StrictInt = Field(12, ge=1, le=MAX_SEEDS)  # the most seeds a study's sequential looks may give a variant
    data: DataRoot = Field(default_factory=DataRoot)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    defaults: dict[str, Any] = Field(default_factory=dict)  # study keys every study starts from
    profiles: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"default": {}})

    @field_validator("profiles")
    @classmethod
    def _has_default(cls, v: dict) -> dict:
        v.setdefault("default", {})
        return v


# --------------------------------------------------------------------------- a trial

AugmentName = Literal["none", "crop", "flip", "crop_flip", "strong", "rotate", "affine"]  # pipeline.augment's


class TrainConfig(Strict):
    epochs: StrictInt = Field(10, ge=1, le=MAX_EPOCHS)
    batch_size: StrictInt = Field(64, ge=1, le=MAX_BATCH)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Float = Field(0.05, gt=0)
    momentum: Float = Field(0.9, ge=0, lt=1)
    weight_decay: Float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: Float | None = Field(None, gt=0)  # clip-by-norm threshold
    augment: AugmentName = "none"
    train_limit: StrictInt | None = Field(None, ge=1, le=MAX_COUNT)  # use only the first N training samples
    diagnostics: StrictBool = True  # per-layer gradient/weight norms, dead units, activation std
    checkpoint_every: StrictInt = Field(1, ge=0, le=MAX_EPOCHS)  # epochs between checkpoints; 0 turns them off
    eval_batch_size: StrictInt = Field(1024, ge=1, le=MAX_BATCH)
    # Opt-in speed for GPU runs; the defaults keep CPU studies bit-for-bit as they were.
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast forward and loss (weights stay fp32)
    channels_last: StrictBool = False  # NHWC memory layout for image models and batches (faster convs on GPU)


class Component(Strict):
    """A registry name plus that entry's own options (validated against the entry's Options class)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(Component):
    init: str = "default"  # weight initialization scheme (pipeline.models.init)


class TrialConfig(Strict):
    """Everything one trial needs; saved with every run as the resolved config."""

    study: str
    model: ModelSpec
    dataset: Component
    train: TrainConfig
    seed: StrictInt


# --------------------------------------------------------------------------- experiments/<study>.yaml

SearchAlgorithm = Literal["grid", "random", "optuna"]
RANGES = ("uniform", "loguniform", "randint")
_FORMS = "must be a list of values or one of {grid|choice: [...]}, {uniform|loguniform|randint: [low, high]}"


def _refused(message: str) -> PydanticCustomError:
    """A schema error whose message is whole as it stands (`_message` adds no `(got ...)` to it)."""
    return PydanticCustomError("config", "{message}", {"message": message})


def _check_axis(axis: Any) -> Any:
    """One search-space axis: a non-empty list, {grid|choice: [values]}, or a well-formed range."""
    if isinstance(axis, list):
        if not axis:
            raise _refused("needs at least one value")
        return axis
    if not (isinstance(axis, dict) and len(axis) == 1):
        raise _refused(_FORMS)
    ((kind, args),) = axis.items()
    if kind in ("grid", "choice"):
        if not (isinstance(args, list) and args):
            raise _refused(f"{kind} needs a non-empty list of values")
        return axis
    if kind not in RANGES:
        raise _refused(_FORMS)
    pair = isinstance(args, list) and len(args) == 2
    numbers = pair and all(isinstance(a, int | float) and not isinstance(a, bool) and math.isfinite(a) for a in args)
    if kind == "randint":
        rule = "randint needs [low, high] with integers low < high"
        ok = numbers and all(isinstance(a, int) for a in args) and args[0] < args[1]
    else:
        rule = f"{kind} needs [low, high] with finite low < high" + (" and low > 0" if kind == "loguniform" else "")
        ok = numbers and args[0] < args[1] and (kind != "loguniform" or args[0] > 0)
    if not ok:
        raise _refused(f"{rule} (got {args!r})")
    return axis


class Search(Strict):
    algorithm: SearchAlgorithm = "grid"
    # dotted key -> list of values (grid) or {grid|choice|uniform|loguniform|randint: [...]}
    space: dict[str, Annotated[Any, AfterValidator(_check_axis)]] = Field(default_factory=dict)
    num_samples: StrictInt = Field(1, ge=1, le=MAX_SAMPLES)  # configurations drawn by random/optuna search
    scheduler: Literal["none", "asha"] = "none"
    grace_period: StrictInt = Field(1, ge=1)  # ASHA: epochs before a trial may be stopped
    reduction_factor: StrictInt = Field(3, ge=2)


class Target(Strict):
    """'Epochs to reach <metric> >= value' (or <= for mode min) is reported per trial."""

    metric: str = "val_accuracy"
    value: Float


class Resources(Strict):
    workers_per_trial: StrictInt | None = Field(None, ge=1)
    cpus_per_worker: Float | None = Field(None, gt=0)
    gpus_per_worker: Float | None = Field(None, ge=0)


ClaimKind = Literal["better", "ratio", "extreme", "chance", "trains", "no_gain"]


class Claim(Strict):
    """One of the primer's claims about a study, stated so that the runs can check it (`pipeline.report.claims`).

    kind       what is claimed of variant(s) `a` (and `b`):
      better   a beats b on `metric` (its direction from `direction`, else the metric's own);
      ratio    mean(a) / mean(b) on `metric` equals `value` within `tolerance` (relative);
      extreme  a has the highest (`direction: max`) or lowest `metric` of all variants;
      chance   a stays at chance level (the task's trivial predictor) on the headline metric, or within noise of
               `value` on either side when the claim states the chance level (a discriminator's 0.5);
      trains   a gets clearly above chance on the headline metric;
      no_gain  a is not better than b on `metric` by more than `margin`.
    metric     a run metric (its final value, `pipeline.runs.final`), or `<section>.<quantity>` for a per-seed value
               a report section computes; default: the study's headline metric (the test metric of the
               best-validation checkpoint).
    margin     required, > 0, for `no_gain` (the largest gain that counts as none) and `chance` (how near chance
               counts as at it): their equivalence tests need it declared before the runs; optional for `trains`
               (how far above chance counts as learning, default 0); refused for the other kinds, whose tests
               have none.
    """

    claim: str
    kind: ClaimKind
    a: str | list[str]
    b: str | list[str] | None = None
    metric: str | None = None
    direction: Literal["max", "min"] | None = None
    value: Float | None = None
    tolerance: Float = Field(0.05, ge=0)
    margin: Float | None = Field(None, ge=0, validate_default=True)

    @field_validator("margin")
    @classmethod
    def _margin_for_the_kind(cls, v: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("kind")
        if kind in ("no_gain", "chance") and (v is None or v <= 0):
            got = "none" if v is None else f"{v:g}"
            raise _refused(
                f"a {kind} claim is an equivalence test and needs a margin > 0, declared before the runs (got {got}): "
                "the largest difference that still counts as none, in the metric's units, e.g. `margin: 0.01`"
            )
        if kind in ("better", "ratio", "extreme") and v is not None:
            raise _refused(f"a {kind} claim takes no margin (allowed for no_gain, chance and trains)")
        return v


class SeedRange(Strict):
    """`seeds: {min: m, max: M}`: sequential looks (`pipeline.sequential`): every variant starts at m seeds, and only
    the variants an undecided claim names get more, up to M."""

    min: StrictInt = Field(ge=2, le=MAX_SEEDS)  # one seed gives no test, so a first look at 1 could decide nothing
    max: StrictInt = Field(ge=2, le=MAX_SEEDS)

    @field_validator("max")
    @classmethod
    def _not_below_min(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and v < low:
            raise _refused(f"must be at least min ({low}) (got {v})")
        return v


class StudySpec(Strict):
    question: str
    model: dict[str, Any]  # {name: <family>, init: ..., <family options>}
    dataset: dict[str, Any]  # {name: <dataset>, <dataset options>}
    train: dict[str, Any] = Field(default_factory=dict)
    search: Search = Field(default_factory=Search)
    seeds: Annotated[StrictInt, Field(ge=1, le=MAX_SEEDS)] | SeedRange = 2  # n seeds, or a range: sequential looks
    metric: str = "val_accuracy"  # decides best trial, ASHA, the report's ranking
    mode: Literal["max", "min"] = "max"
    target: Target | None = None
    resources: Resources = Field(default_factory=Resources)
    report: list[str] = Field(default_factory=list)  # study-specific report sections (pipeline.sections)
    baseline: str | None = None  # the variant others are compared with (else: all pairs, Holm-corrected)
    expect: list[Claim] = Field(default_factory=list)  # the primer's claims, each given a verdict by the report
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)


# --------------------------------------------------------------------------- loading and errors


def _is_branch(part: int | str) -> bool:
    """A union's branch in an error's loc (`seeds: n | {min, max}`): 'constrained-int', 'SeedRange'; keys are
    lowercase."""
    return isinstance(part, str) and (part[:1].isupper() or part.startswith("constrained-"))


def _first_error(e: ValidationError, model: type[BaseModel], prefix: str) -> ConfigError:
    errs = e.errors()
    err = errs[0]
    if isinstance(err.get("input"), dict) and err["type"] in _INT_ERRORS:  # a mapping where n | {min, max} is asked
        err = next((x for x in errs if any(_is_branch(p) and p[:1].isupper() for p in x["loc"])), err)
    err = {**err, "loc": tuple(p for p in err["loc"] if not _is_branch(p))}
    loc = [str(p) for p in err["loc"]]
    key = ".".join([p for p in (prefix, *loc) if p])
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        return ConfigError(f"unknown key; allowed: {', '.join(allowed)}", key=key)
    if err["type"] == "missing":
        return ConfigError("required key is missing", key=key)
    return ConfigError(_message(err, _schema_at(model, err["loc"])), key=key)


_INT_ERRORS = {"int_type", "int_parsing", "int_from_float", "greater_than_equal", "less_than_equal"}  # StrictInt's


def _message(err: Any, schema: dict[str, Any]) -> str:
    """pydantic's message, or one that says more: an integer's whole range, YAML's true named as a boolean."""
    value, kind = err.get("input"), err["type"]
    if kind == "config":
        return err["msg"]
    got = f"{str(value).lower()}, a YAML boolean" if isinstance(value, bool) else repr(value)
    if schema.get("type") == "integer" and kind in _INT_ERRORS:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        span = f" >= {lo:,}" if lo is not None else ""
        if lo is not None and hi is not None:
            span = f" from {lo:,} to {hi:,}"
        return f"must be an integer{span} (got {got})"
    if kind in ("finite_number", "bool_number"):
        return f"must be a finite number (got {got})"
    return f"{err['msg']} (got {value!r})"


def _schema_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> dict[str, Any]:
    """The JSON schema of the value at `loc` ({} where it has none of its own): where a message finds its bounds."""
    try:
        schema = model.model_json_schema()
    except PydanticUserError:  # a type without a JSON schema: the message goes without bounds
        return {}
    defs = schema.get("$defs", {})

    def own(node: dict[str, Any], inner: bool = False) -> dict[str, Any]:
        """Through a $ref, an Optional, and a union of an integer and a mapping (`seeds`): the mapping when `inner`
        (a key inside it comes next), else the integer."""
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in node else node
        options = [own(n) for n in node.get("anyOf", ()) if n.get("type") != "null"]
        if len(options) > 1:
            options = [n for n in options if ("properties" in n) == inner] or options
        return options[0] if len(options) == 1 else node

    node = schema
    for part in loc:
        node = own(node, inner=True)
        node = node.get("items", {}) if isinstance(part, int) else node.get("properties", {}).get(part, {})
    return own(node)


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def validate(model: type[BaseModel], data: Any, *, file: str | None = None, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _first_error(e, model, prefix).located(file=file) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("file not found", file=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", file=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        # one line: a ReaderError's str() spans two lines, with its own "in <unicode string>" position
        raise ConfigError(f"not valid YAML{where}: {' '.join(str(problem).split())}", file=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping of keys to values, got {type(data).__name__}", file=str(path))
    return data


def load_params(path: str | Path = "params.yaml") -> Params:
    params: Params = validate(Params, read_yaml(path), file=str(path))
    if params.profile not in params.profiles:
        raise ConfigError(
            f"unknown profile {params.profile!r}; allowed: {', '.join(params.profiles)}", file=str(path), key="profile"
        )
    return params


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "space":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def study_name(path: str | Path) -> str:
    return Path(path).stem


def load_study(
    path: str | Path, params: Params, params_file: str = "params.yaml", check: TrialCheck | None = None
) -> Study:
    """Read, layer and validate a study spec, including every point of its search space (see
    `Study.validate_space` for `check`)."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw.get("profiles", {}), dict):
        raise ConfigError("must be a mapping of profile name to overrides", file=str(path), key="profiles")
    unknown = set(raw.get("profiles", {})) - set(params.profiles)
    if unknown:
        raise ConfigError(
            f"unknown profile {sorted(unknown, key=str)[0]!r}; allowed: {', '.join(params.profiles)}",
            file=str(path),
            key="profiles",
        )
    base = spec_as_written(path, raw, params)
    merged = deep_merge(base, params.profiles[params.profile])
    merged = deep_merge(merged, raw.get("profiles", {}).get(params.profile, {}))
    # Profile keys may only name study keys: an error there points at params.yaml.
    validate(
        StudySpec,
        deep_merge({"question": "", "model": {}, "dataset": {}}, params.profiles[params.profile]),
        file=params_file,
        prefix=f"profiles.{params.profile}",
    )
    spec: StudySpec = validate(StudySpec, merged, file=str(path))
    study = Study(study_name(path), path, spec, params)
    study.validate_space(check)
    check_seed_range(study)
    return study


def check_seed_range(study: Study) -> None:
    """A `seeds: {min, max}` range the sweep can run: looks need a grid of variants trained to their end (Tune's grid
    search, no early stopping), and a max that params.yaml's `max_seeds` affords."""
    s, file = study.spec.seeds, str(study.path)
    if isinstance(s, int):
        return
    search = study.spec.search
    if search.algorithm != "grid" or search.scheduler != "none":
        raise ConfigError(
            "a seed range {min, max} needs search.algorithm grid and search.scheduler none (each look adds seeds to "
            f"named variants; got {search.algorithm} with {search.scheduler}); give a number of seeds instead",
            file=file,
            key="seeds",
        )
    if s.max > study.params.max_seeds:
        raise ConfigError(
            f"must be at most params.yaml's max_seeds ({study.params.max_seeds}) (got {s.max}); lower it, or raise "
            "max_seeds in params.yaml",
            file=file,
            key="seeds.max",
        )


def spec_as_written(path: Path, raw: dict[str, Any], params: Params) -> dict[str, Any]:
    """The study file's keys over params.yaml's defaults, before any profile: validated on their own, every point of
    the space resolved, so that a profile overlay cannot hide a bad value. `raw` is the file's content."""
    base = deep_merge(params.defaults, {k: v for k, v in raw.items() if k != "profiles"})
    Study(study_name(path), path, validate(StudySpec, base, file=str(path)), params).validate_space()
    return base


def _component(raw: dict[str, Any], key: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError("must be a mapping with a 'name'", key=key)
    special = {"name", "init"} if key == "model" else {"name"}
    return {**{k: raw[k] for k in special if k in raw}, "options": {k: v for k, v in raw.items() if k not in special}}


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):  # `model.activation.x`: activation holds a value, not options
            raise ConfigError(f"{p!r} is a value, not a section with keys", key=key)
    d[last] = value


# A check of one resolved trial of a study (the preflight's, against the registries): raises a ConfigError keyed
# within the study spec (`model.name`, `metric`).
TrialCheck = Callable[["Study", TrialConfig], None]


class Study:
    """A validated study spec in the active profile, and how to resolve its trials."""

    def __init__(self, name: str, path: Path, spec: StudySpec, params: Params):
        self.name, self.path, self.spec, self.params = name, path, spec, params

    @property
    def seeds(self) -> list[int]:
        """Every seed a variant may get: n, or the range's max (`pipeline.sequential.Design.of` plans the looks)."""
        s = self.spec.seeds
        return [self.params.seed + i for i in range(s if isinstance(s, int) else s.max)]

    @property
    def sequential(self) -> bool:
        """Seeds added look by look (`seeds: {min: m, max: M}` with m < M). The config does not import the design:
        whatever a trial imports is part of its identity (`pipeline.codegraph`), and the rule decides no weights."""
        s = self.spec.seeds
        return not isinstance(s, int) and s.min < s.max

    # What the report alone reads: editing these must not re-run a sweep.
    REPORT_ONLY = frozenset({"question", "report", "baseline", "expect"})

    def fingerprint(self) -> dict[str, Any]:
        """Everything that decides this study's sweep, resolved in the active profile: the `specs` stage writes it
        and the study stage depends on it, so a claim, a question or an inactive profile can change without
        re-running the trials. With sequential looks the claims and the baseline decide which seeds are trained,
        so they count too."""
        report_only = {"question", "report"} if self.sequential else set(self.REPORT_ONLY)
        return {
            "study": self.name,
            "profile": self.params.profile,
            "spec": self.spec.model_dump(mode="json", exclude=report_only | {"profiles"}),
            "seeds": self.seeds,
            "workers_per_trial": self.params.ray.workers_per_trial,
        }

    def base_trial_dict(self) -> dict[str, Any]:
        return {
            "model": dict(self.spec.model),
            "dataset": dict(self.spec.dataset),
            "train": dict(self.spec.train),
        }

    def resolve(self, point: dict[str, Any], seed: int) -> TrialConfig:
        """The full config of one trial: the base plus one point of the search space."""
        d = self.base_trial_dict()
        for key, value in point.items():
            set_dotted(d, key, value)
        return self._validate_trial(d, seed)

    def _validate_trial(self, d: dict[str, Any], seed: int) -> TrialConfig:
        from pipeline.data import DATASETS
        from pipeline.models import MODELS
        from pipeline.models.init import INIT_SCHEMES

        file = str(self.path)
        try:
            model, dataset = _component(d["model"], "model"), _component(d["dataset"], "dataset")
            trial = validate(
                TrialConfig,
                {"study": self.name, "model": model, "dataset": dataset, "train": d["train"], "seed": seed},
                file=file,
            )
            for key, registry, comp in (("model", MODELS, trial.model), ("dataset", DATASETS, trial.dataset)):
                try:
                    entry = registry.get(comp.name)
                except ConfigError as e:
                    raise e.located(file=file, key_prefix=f"{key}.name") from None
                opts = validate(entry.options, comp.options, file=file, prefix=key)
                comp.options = opts.model_dump()
            if trial.model.init not in INIT_SCHEMES:
                raise ConfigError(
                    f"unknown init {trial.model.init!r}; allowed: {', '.join(INIT_SCHEMES)}",
                    file=file,
                    key="model.init",
                )
        except ConfigError as e:
            raise e.located(file=file) from None
        return trial

    # ---- search space

    def space_values(self, key: str) -> list[Any]:
        """Representative values of one axis (its form checked by the schema): every grid/choice value, or a
        range's two ends."""
        v = self.spec.search.space[key]
        if isinstance(v, list):
            return v
        ((kind, args),) = v.items()
        if kind in RANGES and self.spec.search.algorithm == "grid":
            raise ConfigError(
                f"'{kind}' needs search.algorithm random or optuna; grid takes a list",
                file=str(self.path),
                key=f"search.space.{key}",
            )
        return args

    def validate_space(self, check: TrialCheck | None = None) -> None:
        """Resolve the base and every value of every axis now, so a bad value fails before any run starts.

        `check` runs on each of those trials too (the preflight's checks against the registries); its ConfigError,
        keyed within the study spec, is reported like a resolution error."""
        file, seed = str(self.path), self.seeds[0]
        try:
            base = self.resolve({}, seed)
            if check is not None:
                check(self, base)
        except ConfigError as e:
            raise e.located(file=file) from None
        for key in self.spec.search.space:
            if key.split(".")[0] not in ("model", "dataset", "train"):
                raise ConfigError(
                    "search keys start with model., dataset. or train.", file=file, key=f"search.space.{key}"
                )
            for value in self.space_values(key):
                try:
                    trial = self.resolve({key: value}, seed)
                    if check is not None:
                        check(self, trial)
                except ConfigError as e:
                    inner = f"{e.key}: " if e.key else ""
                    raise ConfigError(
                        f"search value {value!r}: {inner}{e.message}", file=file, key=f"search.space.{key}"
                    ) from None

    def points(self) -> list[dict[str, Any]]:
        """Every point of a grid search's space (the space's keys in order, the last varying fastest)."""
        keys = list(self.spec.search.space)
        return [dict(zip(keys, c)) for c in itertools.product(*(self.space_values(k) for k in keys))]

    def variants(self) -> list[str]:
        return [self.variant(p) for p in self.points()]

    def variant(self, point: dict[str, Any]) -> str:
        """A short, stable label for a point of the space: `relu`, or `hidden=[64],lr=0.1`."""
        if not point:
            return "base"
        if len(point) == 1:
            return _fmt(next(iter(point.values())))
        return ",".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in point.items())


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):  # a whole component as one grid value: `ngram_lm(n=3,embedding_dim=64)`
        args = ",".join(f"{k}={_fmt(x)}" for k, x in v.items() if k != "name")
        return f"{v['name']}({args})" if "name" in v and args else str(v.get("name", args))
    return str(v)
