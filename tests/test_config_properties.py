"""Property tests of config parsing: whatever is in params.yaml or a study spec, loading it either works or
raises ConfigError with a one-line message. Never another exception, never a traceback.

Documents come from three generators: raw text and bytes (mostly not YAML at all), arbitrary nested mappings
built from a vocabulary of real and near-miss keys, and the repository's own files with a few values replaced.
"""

from __future__ import annotations

import copy
import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.config import load_params, load_study
from pipeline.errors import ConfigError
from tests.conftest import REPO, TINY_SPEC, write_params, write_spec

# Sized so the file runs in well under a minute on a shared 2-core machine.
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Real keys (so generated documents get past the first unknown-key check) and near misses of them.
KEYS = [
    *"profile seed studies data root download mlflow tracking_uri async_logging ray address num_cpus num_gpus".split(),
    *"workers_per_trial cpus_per_worker gpus_per_worker max_concurrent_trials storage_path max_failures".split(),
    *"defaults profiles default tiny full question model dataset train search seeds metric mode target".split(),
    *"resources report name init options hidden activation width depth blocks epochs lr batch_size".split(),
    *"optimizer schedule augment diagnostics precision space algorithm num_samples scheduler value".split(),
    *"grace_period reduction_factor choice uniform loguniform randint grid n_samples val_fraction".split(),
    "model.activation",
    "train.lr",
    "model.hidden",
    "dataset.name",
    "model.activation.x",
    "train",
    "epoch",
    "lr ",
]
WORDS = [
    "relu",
    "tanh",
    "maxout",
    "mlp",
    "lenet",
    "resnet",
    "digits",
    "synthetic",
    "cifar100",
    "sgd",
    "adam",
    "grid",
    "random",
    "optuna",
    "asha",
    "none",
    "max",
    "min",
    "val_accuracy",
    "tiny",
    "default",
    "full",
    "",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=10),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-2, 2), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=20,
)
mappings = st.dictionaries(keys, values, max_size=8)


def _one_line_or_ok(load: Callable[[], Any]) -> Any:
    """Run `load`; a ConfigError must be one non-empty line. Any other exception fails the test."""
    try:
        return load()
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)
        return None


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a nested dict/list document (the root included)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw, base: dict) -> dict:
    """`base` with one to three places replaced by arbitrary values, deleted, or given a new key."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[last] = draw(values)
        elif action == "delete":
            del node[last]
        elif isinstance(node[last], dict):
            node[last][draw(keys)] = draw(values)
    return doc


REPO_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
REPO_STUDY = yaml.safe_load((REPO / "experiments" / "activations.yaml").read_text())


def _check_study(folder: Path, spec_text: str | bytes, params_path: Path | None = None) -> None:
    params_path = params_path or write_params(folder)
    spec_path = _write(folder, "s.yaml", spec_text)

    def load():
        study = load_study(spec_path, load_params(params_path), str(params_path))
        # What a trial does next: resolve points of the space. Each axis value alone was validated; a
        # combination may still be refused, but only with a ConfigError.
        if study.spec.search.algorithm == "grid":
            keys = list(study.spec.search.space)
            for values in itertools.islice(itertools.product(*(study.space_values(k) for k in keys)), 50):
                point = dict(zip(keys, values))
                _one_line_or_ok(lambda point=point: study.resolve(point, study.seeds[0]))
        return study

    _one_line_or_ok(load)


# --------------------------------------------------------------------------- params.yaml


@SETTINGS
@given(text=st.text(max_size=200))
def test_params_any_text(text):
    with tempfile.TemporaryDirectory() as d:
        _one_line_or_ok(lambda: load_params(_write(Path(d), "params.yaml", text)))


@SETTINGS
@given(raw=st.binary(max_size=100))
def test_params_any_bytes(raw):
    with tempfile.TemporaryDirectory() as d:
        _one_line_or_ok(lambda: load_params(_write(Path(d), "params.yaml", raw)))


@SETTINGS
@given(doc=mappings)
@example(doc={"\n": None})  # found by Hypothesis: the key itself broke the one-line message
def test_params_any_mapping(doc):
    with tempfile.TemporaryDirectory() as d:
        _one_line_or_ok(lambda: load_params(_write(Path(d), "params.yaml", _dump(doc))))


@SETTINGS
@given(doc=mutated(REPO_PARAMS))
def test_params_repo_file_mutated(doc):
    with tempfile.TemporaryDirectory() as d:
        _one_line_or_ok(lambda: load_params(_write(Path(d), "params.yaml", _dump(doc))))


@SETTINGS
@given(doc=mutated(REPO_PARAMS))
def test_mutated_params_with_a_valid_study(doc):
    # A valid spec under broken params: the error may come from either file, still one line.
    with tempfile.TemporaryDirectory() as d:
        params_path = _write(Path(d), "params.yaml", _dump(doc))
        _check_study(Path(d), _dump(TINY_SPEC), params_path)


# --------------------------------------------------------------------------- experiments/<study>.yaml


@SETTINGS
@given(text=st.text(max_size=200))
def test_study_any_text(text):
    with tempfile.TemporaryDirectory() as d:
        _check_study(Path(d), text)


@SETTINGS
@given(doc=mappings)
def test_study_any_mapping(doc):
    with tempfile.TemporaryDirectory() as d:
        _check_study(Path(d), _dump(doc))


@SETTINGS
@given(doc=st.one_of(mutated(REPO_STUDY), mutated(TINY_SPEC)))
def test_study_mutated(doc):
    with tempfile.TemporaryDirectory() as d:
        _check_study(Path(d), _dump(doc))


@SETTINGS
@given(
    space=st.dictionaries(
        st.sampled_from(
            [
                "model.activation",
                "model.hidden",
                "train.lr",
                "train.epochs",
                "model.activation.x",
                "dataset.name",
                "train",
                "model",
                "seed",
                "model.width",
            ]
        ),
        st.one_of(
            st.lists(values, max_size=3),
            st.dictionaries(st.sampled_from(["choice", "uniform", "grid"]), values, max_size=2),
            values,
        ),
        max_size=3,
    ),
    algorithm=st.sampled_from(["grid", "random", "optuna"]),
)
def test_study_any_search_space(space, algorithm):
    # The search space is the one place where keys are dotted paths into the trial config.
    with tempfile.TemporaryDirectory() as d:
        _check_study(Path(d), _dump({**TINY_SPEC, "search": {"algorithm": algorithm, "space": space}}))


# --------------------------------------------------------------------------- through the stage's command line

BAD_SPECS = {
    "typo'd key": ({**TINY_SPEC, "trian": {"epochs": 2}}, "trian"),
    "typo'd nested key": ({**TINY_SPEC, "train": {"epoch": 2}}, "train.epoch"),
    "wrong type": ({**TINY_SPEC, "train": {"epochs": "ten"}}, "train.epochs"),
    "unknown activation": ({**TINY_SPEC, "model": {**TINY_SPEC["model"], "activation": "relux"}}, "activation"),
    "unknown model": ({**TINY_SPEC, "model": {"name": "transformerx"}}, "unknown model 'transformerx'"),
    "unknown dataset": ({**TINY_SPEC, "dataset": {"name": "imagenet"}}, "unknown dataset 'imagenet'"),
    "bad search value": ({**TINY_SPEC, "search": {"space": {"model.activation": ["relu", "gelux"]}}}, "gelux"),
}


def _stage(folder: Path, spec_path: Path, capsys) -> tuple[int, str]:
    """stages/study.py's main(), in this process: the same code path as the DVC stage, minus the interpreter."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_stage", REPO / "stages" / "study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    params = write_params(folder)
    code = mod.main(
        [
            "--params",
            str(params),
            "--study",
            str(spec_path),
            "--data",
            str(folder / "data"),
            "--out",
            str(folder / "results"),
        ]
    )
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_stage_refuses_bad_spec_with_one_line(tmp_path, capsys, case):
    spec, expect = BAD_SPECS[case]
    code, err = _stage(tmp_path, write_spec(tmp_path, "s", spec), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "ray_results").exists()


def test_stage_refuses_missing_spec_file(tmp_path, capsys):
    code, err = _stage(tmp_path, tmp_path / "nope.yaml", capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nope.yaml'}: file not found"
    assert not (tmp_path / "mlflow.db").exists()
