"""Config validation: every bad input is one line naming the file, the key and what is allowed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_params, load_study
from pipeline.errors import ConfigError
from tests.conftest import REPO, TINY_SPEC, study_stage, write_params, write_spec


def _study(tmp_path: Path, spec: dict, **params_over):
    params_path = write_params(tmp_path, **params_over)
    path = write_spec(tmp_path, "s", spec)
    return load_study(path, load_params(params_path), str(params_path))


def _with(spec: dict, dotted: str, value) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(spec))
    node = spec
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return spec


def test_repo_params_and_activations_spec_validate():
    params = load_params(REPO / "params.yaml")
    study = load_study(REPO / "experiments" / "activations.yaml", params)
    assert study.name == "activations"
    # whole-model variants: each activation, and ReLU with Kaiming init
    models = study.space_values("model")
    assert {"sigmoid", "tanh", "relu", "maxout"} <= {m["activation"] for m in models}
    maxout = next(m for m in models if m["activation"] == "maxout")
    cfg = study.resolve({"model": {**maxout}}, 7)
    assert cfg.model.options["activation"] == "maxout" and cfg.seed == 7
    assert cfg.train.batch_size == 64  # params default


def test_layering_profile_overrides_study(tmp_path):
    study = _study(tmp_path, TINY_SPEC)  # tiny profile: seeds 1, epochs 2
    assert study.seeds == [0]
    assert study.resolve({}, 0).train.epochs == 2


@pytest.mark.parametrize(
    ("dotted", "value", "key", "fragment"),
    [
        ("trian", {"epochs": 3}, "trian", "unknown key; allowed: question, model"),
        ("train.epoch", 3, "train.epoch", "unknown key; allowed: epochs"),
        ("train.epochs", "ten", "train.epochs", "must be an integer from 1 to 10,000 (got 'ten')"),
        ("train.epochs", 0, "train.epochs", "must be an integer from 1 to 10,000 (got 0)"),
        # what the schema refuses itself: YAML's true as a number, .inf, bounds, malformed search distributions
        ("train.epochs", True, "train.epochs", "must be an integer from 1 to 10,000 (got true, a YAML boolean)"),
        ("train.lr", float("inf"), "train.lr", "must be a finite number (got inf)"),
        ("train.momentum", True, "train.momentum", "must be a finite number (got true, a YAML boolean)"),
        ("seeds", 5000, "seeds", "must be an integer from 1 to 1,000 (got 5000)"),
        ("model.hidden", [8, -1], "model.hidden.1", "must be an integer from 1 to 65,536 (got -1)"),
        ("dataset", {"name": "two_class", "noise": float("nan")}, "dataset.noise", "must be a finite number (got nan)"),
        (
            "search",
            {"algorithm": "random", "space": {"train.lr": {"loguniform": [0, 0.1]}}},
            "search.space.train.lr",
            "loguniform needs [low, high] with finite low < high and low > 0 (got [0, 0.1])",
        ),
        ("model.activation", "relux", "model.activation", "'sigmoid', 'tanh', 'relu', 'leaky_relu' or 'maxout'"),
        ("model.name", "transformer", "model.name", "unknown model 'transformer'; allowed: "),
        ("dataset.name", "imagenet", "dataset.name", "unknown dataset 'imagenet'; allowed: "),
        ("model.hiden", [3], "model.hiden", "unknown key; allowed: hidden, activation"),
        ("search.algorithm", "bayes", "search.algorithm", "'grid', 'random' or 'optuna'"),
        ("model.init", "magic", "model.init", "allowed: default, normal, xavier, kaiming"),
    ],
)
def test_bad_study_values_name_file_key_and_allowed(tmp_path, dotted, value, key, fragment):
    with pytest.raises(ConfigError) as e:
        _study(tmp_path, _with(TINY_SPEC, dotted, value))
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 's.yaml'}: {key}: "), msg
    assert fragment in msg, msg
    assert "\n" not in msg


def test_bad_search_value_is_caught_before_anything_runs(tmp_path):
    spec = _with(TINY_SPEC, "search.space", {"model.activation": ["relu", "swish"]})
    with pytest.raises(ConfigError, match=r"search\.space\.model\.activation: search value 'swish'"):
        _study(tmp_path, spec)


def test_bad_params_key_names_params_file(tmp_path):
    path = write_params(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["ray"]["workers"] = 2
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"params\.yaml: ray\.workers: unknown key; allowed: address"):
        load_params(path)


def test_unknown_profile(tmp_path):
    path = write_params(tmp_path, profile="huge")
    with pytest.raises(ConfigError, match="profile: unknown profile 'huge'; allowed: default, tiny, full"):
        load_params(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML at line"):
        load_params(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_params(bad)


@pytest.mark.parametrize(
    ("dotted", "value", "expect"),
    [
        ("model.activation", "relux", "model.activation"),
        ("train.lr", "fast", "train.lr"),
        ("dataset.name", "cifar100", "unknown dataset 'cifar100'"),
    ],
)
def test_stage_exits_2_with_one_line_and_writes_nothing(tmp_path, dotted, value, expect):
    params_path = write_params(tmp_path)
    spec = write_spec(tmp_path, "s", _with(TINY_SPEC, dotted, value))
    proc = subprocess.run(
        study_stage(params_path, spec, tmp_path / "data", tmp_path / "results"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()


def test_stage_missing_experiment_file_exits_2(tmp_path):
    params_path = write_params(tmp_path)
    proc = subprocess.run(
        study_stage(params_path, tmp_path / "missing.yaml", "d", "o"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'missing.yaml'}: file not found"


def test_a_grid_under_asha_runs_in_a_seeded_shuffled_order(tmp_path):
    from pipeline.tune.tuner import param_space

    lrs = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008]
    spec = _with(_with(TINY_SPEC, "search.space", {"train.lr": lrs}), "search.algorithm", "grid")

    def order(scheduler: str, seed: int = 0) -> list[float]:
        study = _study(tmp_path, _with(spec, "search.scheduler", scheduler), seed=seed)
        return param_space(study)["train.lr"]["grid_search"]

    assert order("none") == lrs  # a plain grid runs as written
    shuffled = order("asha")
    assert sorted(shuffled) == lrs and shuffled != lrs  # the same configurations, another order...
    assert order("asha") == shuffled  # ...the same every time
    assert order("asha", seed=1) != shuffled  # and set by the base seed
