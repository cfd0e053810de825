"""The classic-family studies: every spec validates in every profile, each report section computes its
answer from the data it is given, and two of the studies run end to end through the DVC stage scripts."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from pipeline import tracking
from pipeline.config import TrialConfig, load_params, load_study
from pipeline.data.base import LoadContext, Splits
from pipeline.datainfo import DataInfo
from pipeline.diagnostics import initial_stats
from pipeline.errors import ConfigError
from pipeline.models import build_model
from pipeline.models.init import apply_init
from pipeline.models.rnn import recurrent_parameter_count
from pipeline.sections import (
    Context,
    architectures,
    capacity,
    check_sections,
    clipping,
    decision_boundary,
    degradation,
    generalization_gap,
    init_signal,
    list_sections,
    lm_perplexity,
    maxout_params,
    oov_accuracy,
    polynomial_fit,
    recurrent_params,
)
from pipeline.sections.common import decided_by, describe, logged_config, sizes, stat, which
from pipeline.trained import ModelLoader, Trained
from tests.conftest import REPO, SERIAL_TRIALS, write_params

ARCHS = ["lenet", "alexnet", "vgg", "googlenet", "resnet"]

STUDIES = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))
CLASSIC = [
    "regression",
    "logistic",
    "depth_capacity",
    "cnn_architectures",
    "init_schemes_cnn",
    "init_schemes_mlp",
    "degradation",
    "augmentation",
    "rnn_cells",
    "grad_clipping",
]


def grid_points(study) -> list[dict]:
    """Every point of a study's grid: the variants its sweep trains."""
    keys = list(study.spec.search.space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(study.space_values(k) for k in keys))]


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize("profile", ["default", "tiny", "full"])
@pytest.mark.parametrize("name", STUDIES)
def test_every_study_validates(name: str, profile: str) -> None:
    params = load_params(REPO / "params.yaml").model_copy(update={"profile": profile})
    study = load_study(REPO / "experiments" / f"{name}.yaml", params, str(REPO / "params.yaml"))
    assert study.spec.question.strip()
    points = grid_points(study)
    assert len({study.variant(p) for p in points}) == len(points)  # labels tell every variant apart
    for point in points:
        study.resolve(point, study.seeds[0])


def test_classic_studies_exist_and_name_their_sections() -> None:
    assert set(CLASSIC) <= set(STUDIES)
    params = load_params(REPO / "params.yaml")
    for name in CLASSIC:
        study = load_study(REPO / "experiments" / f"{name}.yaml", params)
        assert study.spec.report and set(study.spec.report) <= set(list_sections()), name


def test_every_report_name_is_a_registered_section() -> None:
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        names = yaml.safe_load(path.read_text()).get("report", [])
        check_sections(names, str(path))
        assert set(names) <= set(list_sections()), path.name
    with pytest.raises(ConfigError) as err:
        check_sections(["nope"], "x.yaml")
    text = str(err.value)
    assert "x.yaml" in text and "report.0" in text and all(name in text for name in list_sections())


@pytest.mark.parametrize("name", CLASSIC)
def test_full_profile_uses_more_epochs(name: str) -> None:
    base = load_params(REPO / "params.yaml")
    default = load_study(REPO / "experiments" / f"{name}.yaml", base).resolve({}, 0)
    full = load_study(REPO / "experiments" / f"{name}.yaml", base.model_copy(update={"profile": "full"})).resolve({}, 0)
    assert full.train.epochs > default.train.epochs


# --------------------------------------------------------------------------- fabricated runs


def _cfg(model: dict, dataset: dict | None = None, train: dict | None = None, seed: int = 0) -> TrialConfig:
    from pipeline.config import Params, Study, StudySpec

    spec = StudySpec(question="q?", model=model, dataset=dataset or {"name": "digits"}, train=train or {})
    return Study("s", Path("s.yaml"), spec, Params()).resolve({}, seed)


def _run(cfg: TrialConfig, variant: str, history: dict[str, list[float]], **kw) -> dict:
    """A runs.json entry as tracking.export_runs writes it, with params logged the way trial.py logs them."""
    params = {
        k: json.dumps(v) if isinstance(v, list | dict) else str(v)
        for k, v in tracking.flatten(cfg.model_dump()).items()
    }
    hist = {k: [[i + 1, v] for i, v in enumerate(vals)] for k, vals in history.items()}
    hist.setdefault("epoch", [[i + 1, float(i + 1)] for i in range(max((len(v) for v in history.values()), default=0))])
    for key in ("n_params", "flops_per_sample"):
        if key in kw:
            hist[key] = [[0, kw.pop(key)]]
    return {
        "run_id": kw.pop("run_id", f"{variant}-{cfg.seed}"),
        "status": kw.pop("status", "FINISHED"),
        "tags": {"variant": variant, "seed": str(cfg.seed), "outcome": kw.pop("outcome", "completed")},
        "params": params,
        "final": {k: v[-1][1] for k, v in hist.items() if v},
        "history": hist,
    }


def _ctx(tmp_path: Path, runs: list[dict], metric: str = "val_accuracy", mode: str = "max") -> Context:
    from pipeline.report.analysis import analyze

    (tmp_path / "figures").mkdir(exist_ok=True)
    return Context("s", runs, {"tracking_uri": None}, analyze(runs, metric, mode), tmp_path, None)


# Words a section's sentence may not use: a section describes, the study's one test family compares (issue #19).
# "best" is allowed only in "best-validation checkpoint" and "best checkpoint", which name a run's number.
RANKING = re.compile(
    r"\b(best(?![- ](validation|checkpoint))|worst|ranks?|beats?|better|worse|higher than|lower than|shrinks?|"
    r"raises?|outperforms?|most accurate|fastest|slowest|dominated|pareto|above the|below the|wins?)\b",
    re.IGNORECASE,
)


def _descriptive(text: str) -> str:
    """`text`, after checking that it ranks nothing."""
    assert not RANKING.search(text), (RANKING.search(text).group(0), text)
    return text


def test_the_ranking_check_catches_what_sections_used_to_say() -> None:
    for old in (
        "gru is best.",
        "The most accurate MLP is depth 1 × width 256.",
        "Compared with none, affine and crop shrink the gap; affine and crop raise val accuracy.",
        "the 26-layer plain network ends 0.3983 above the 8-layer one",
        "lstm reaches 22.5, below the best n-gram model",
        "On test_f1, bag ranks first; it is significantly higher than lstm",
        "On test_accuracy against FLOPs the Pareto front is vgg and lenet; alexnet is dominated.",
    ):
        with pytest.raises(AssertionError):
            _descriptive(old)
    _descriptive("test_accuracy of each run's best-validation checkpoint; each family's best checkpoint")


def test_describe_which_tested_by_and_sizes(tmp_path) -> None:
    s = stat([0.90, 0.92, 0.94], "test_accuracy")
    assert describe(s) == f"0.920 ± 0.020 [{s['ci_low']:.3f}, {s['ci_high']:.3f}] (n=3)"
    assert describe(stat([0.5, 0.5], "test_accuracy")) == "0.500 ± 0.000 (n=2)"  # no interval where seeds agree
    assert describe(stat([], "test_accuracy")) == "n/a"
    assert which("test_accuracy") == "test_accuracy of each run's best-validation checkpoint"
    assert which("val_accuracy") == "val_accuracy at each run's last epoch"
    runs = [
        _run(_cfg({"name": "mlp", "hidden": [h]}, seed=seed), f"w{h}", {"val_accuracy": [0.5, 0.6]}, n_params=10.0 * h)
        for h in (16, 64)
        for seed in (0, 1)
    ]
    ctx = _ctx(tmp_path, runs)
    assert decided_by(ctx, "val_accuracy") == (
        "Whether the variants differ on val_accuracy is decided once, by the study's one family of tests "
        "(see Comparisons and Claims)."
    )
    assert decided_by(ctx, "gap").startswith("A difference between variants on gap is tested only where one of the")
    assert sizes(ctx) == (
        "The variants differ in size (w16 160, w64 640 parameters), so a difference between them is not one at "
        "matched parameters."
    )
    same = [r for r in runs if r["tags"]["variant"] == "w16"]
    assert sizes(_ctx(tmp_path, same)) is None


def test_run_config_round_trips_logged_params() -> None:
    cfg = _cfg({"name": "rnn_classifier", "cell": "gru", "param_budget": 900}, train={"grad_clip": 0.5, "lr": 1e-5})
    assert logged_config(_run(cfg, "v", {})) == cfg
    cfg = _cfg({"name": "mlp", "hidden": [16, 16]}, train={"train_limit": 100})
    assert logged_config(_run(cfg, "v", {})) == cfg


# --------------------------------------------------------------------------- regression


def _poly_data(coef: list[float], n: int = 200) -> Splits:
    from pipeline.data.tabular import PolyRegressionOptions, load_poly_regression

    opts = PolyRegressionOptions(n_samples=n, true_coefficients=coef, noise=0.0)
    return load_poly_regression(opts, LoadContext(seed=0, root=Path("."), download=False))


def test_least_squares_recovers_an_exact_polynomial() -> None:
    data = _poly_data([0.5, -1.0, 0.0, 2.0])
    assert polynomial_fit.least_squares(data.x_train, data.y_train, 3) == pytest.approx([0.5, -1.0, 0.0, 2.0], abs=1e-4)
    # one degree more: the extra power gets (almost) nothing
    assert polynomial_fit.least_squares(data.x_train, data.y_train, 4)[4] == pytest.approx(0.0, abs=1e-4)


def test_coefficient_rows_charge_missing_and_extra_powers() -> None:
    truth = [0.5, -1.0, 0.0, 2.0]
    rows = polynomial_fit.coefficient_rows(
        {1: [[0.5, 0.2]], 3: [[0.5, -1.0, 0.1, 2.0], [0.5, -1.0, -0.1, 2.0]], 5: [[0.5, -1.0, 0.0, 2.0, 0.0, 0.3]]},
        truth,
    )
    assert rows[1]["max_abs_error"] == pytest.approx(2.0)  # the missing cubic term
    assert rows[3]["learned"] == pytest.approx(truth) and rows[3]["max_abs_error"] == pytest.approx(0.0)
    assert rows[3]["learned_std"][2] == pytest.approx(math.sqrt(0.02))
    assert rows[5]["max_abs_error"] == pytest.approx(0.3)  # weight on x^5, absent from the truth


def test_polynomial_fit_section_reads_coefficients_from_the_models(tmp_path, monkeypatch) -> None:
    truth = [0.5, -1.0, 0.0, 2.0]
    data = _poly_data(truth)
    runs, models = [], {}
    for degree, val in ((1, 0.11), (3, 0.0101), (5, 0.0104)):
        cfg = _cfg({"name": "polynomial", "degree": degree}, {"name": "poly_regression"})
        run = _run(cfg, str(degree), {"train_loss": [0.5, val * 0.98], "val_loss": [0.5, val]})
        model = build_model("polynomial", {"degree": degree}, data.info)
        with torch.no_grad():  # a known model: the true coefficients, with 0.1 on x^5 at degree 5
            coef = (truth + [0.0, 0.1])[: degree + 1] if degree > 1 else [0.5, 0.7]
            model.linear.bias.fill_(coef[0])
            model.linear.weight.copy_(torch.tensor([coef[1:]]))
        runs.append(run)
        models[run["run_id"]] = Trained(
            model, cfg, Splits(**data.tensors(), info=data.info, meta={**data.meta, "noise_std": 0.1}), run
        )
    monkeypatch.setattr(ModelLoader, "__call__", lambda self, run: models[run["run_id"]])
    res = polynomial_fit.polynomial_fit(_ctx(tmp_path, runs, "val_loss", "min"))
    text = _descriptive(" ".join(res.sentences))
    assert "Per degree, val_loss at each run's last epoch" in text and "degree 3: 0.0101 (n=1)" in text
    assert "degrees 3 and 5 are within 25% of it; degrees 1 (0.11) are not (they underfit)" in text
    assert "[+0.500, -1.000, +0.000, +2.000]" in text  # recovered exactly at the true degree
    assert res.tables["coefficients"]["5"]["max_abs_error"] == pytest.approx(0.1, abs=1e-6)
    assert (tmp_path / "figures" / "mse_vs_degree.png").is_file()


# --------------------------------------------------------------------------- logistic regression


def test_bayes_reference_and_boundary_angle() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g)
    y = (x.sum(dim=1) > 0).float().view(-1, 1)
    h = 0.5
    d = Splits(x, y, x, y, x, y, DataInfo((2,), 1, "binary"), {"class_means": [[-h, -h], [h, h]], "noise_std": 1.0})
    ref = decision_boundary.bayes_reference(d)
    assert ref["accuracy"] == 1.0  # the labels are the Bayes rule itself here
    assert (ref["w0"], ref["w1"], ref["b"]) == pytest.approx((1.0, 1.0, 0.0))
    assert decision_boundary.boundary_angle([1, 1], [2, 2]) == pytest.approx(0.0, abs=1e-6)
    assert decision_boundary.boundary_angle([1, 0], [0, 1]) == pytest.approx(90.0)
    assert decision_boundary.boundary_angle([1, 0], [1, 1]) == pytest.approx(45.0)


# --------------------------------------------------------------------------- depth and width


def test_capacity_sentences_describe_every_configuration() -> None:
    records = []
    for seed in (0, 1):
        for depth, width, acc, gap in (
            (1, 16, 0.80, 0.01),
            (4, 16, 0.70, 0.02),
            (1, 256, 0.90, 0.05),
            (4, 256, 0.95, 0.09),
        ):
            records.append(
                {
                    "depth": depth,
                    "width": width,
                    "n_params": depth * width * 100,
                    "test_accuracy": acc + seed * 0.01,
                    "gap": gap,
                }
            )
    rows = capacity.capacity_rows(records, "test_accuracy")
    assert rows[(4, 256)]["test_accuracy"]["mean"] == pytest.approx(0.955)
    text = _descriptive(" ".join(capacity.capacity_sentences(rows, "test_accuracy")))
    assert "Per configuration, test_accuracy of each run's best-validation checkpoint" in text
    s = rows[(1, 16)]["test_accuracy"]
    assert f"width 16: depth 1 (1,600 parameters) 0.805 ± 0.007 [{s['ci_low']:.3f}, {s['ci_high']:.3f}] (n=2)" in text
    assert "width 256: depth 1 (25,600 parameters)" in text
    assert "gap of the best-validation checkpoint" in text and "depth 4 0.090 ± 0.000 (n=2)" in text


def test_depth_width_of_a_config() -> None:
    assert capacity.depth_width(_cfg({"name": "mlp", "hidden": [64, 64, 64]})) == (3, 64)
    assert capacity.depth_width(_cfg({"name": "mlp", "hidden": [64, 32]})) is None


# --------------------------------------------------------------------------- CNN architectures


def test_architecture_sentences_state_each_architecture_and_its_costs(tmp_path) -> None:
    runs = []
    for name, acc, params, flops, speed in (
        ("lenet", 0.95, 60_000, 4e5, 9000),
        ("vgg", 0.97, 20_000, 2e6, 3000),
        ("googlenet", 0.96, 90_000, 8e6, 300),
    ):
        for seed in (0, 1):
            cfg = _cfg({"name": name}, seed=seed)
            runs.append(
                _run(
                    cfg,
                    name,
                    {"val_accuracy": [0.5, acc + seed * 0.01], "samples_per_s": [10.0, speed]},  # epoch 1: warm-up
                    n_params=params,
                    flops_per_sample=flops,
                )
            )
    res = architectures.architectures(_ctx(tmp_path, runs))
    text = _descriptive(" ".join(res.sentences))
    s = res.tables["architectures"]["lenet"]["val_accuracy"]
    assert (
        f"lenet 0.955 ± 0.007 [{s['ci_low']:.3f}, {s['ci_high']:.3f}] (n=2), 60,000 parameters, 0.40 MFLOPs, "
        "9,000 samples/s" in text
    )
    assert "googlenet 0.965 ± 0.007" in text and "8.00 MFLOPs, 300 samples/s" in text
    assert "The variants differ in size, so a difference between them is not one at matched parameters." in text
    assert "Whether the variants differ on val_accuracy is decided once, by the study's one family of tests" in text


# --------------------------------------------------------------------------- activations


def test_maxout_params_section_reads_the_ratio_from_n_params(tmp_path) -> None:
    info = DataInfo((1, 8, 8), 10)
    runs = []
    for activation in ("relu", "tanh", "maxout"):
        model = build_model("mlp", {"hidden": [16, 16], "activation": activation}, info)
        n = sum(p.numel() for p in model.parameters())
        for seed in (0, 1):
            cfg = _cfg({"name": "mlp", "hidden": [16, 16], "activation": activation}, seed=seed)
            runs.append(_run(cfg, activation, {"val_accuracy": [0.5, 0.6]}, n_params=float(n)))
    res = maxout_params.maxout_params(_ctx(tmp_path, runs))
    # plain: (64·16 + 16) + (16·16 + 16) + (16·10 + 10) = 1,482; maxout doubles the two hidden layers: 2,794
    assert res.tables["maxout"]["maxout"]["ratio"] == pytest.approx({"relu": 2794 / 1482, "tanh": 2794 / 1482})
    assert len(res.sentences) == 1
    assert "maxout has 2,794 parameters, 1.89× the 1,482 of relu and tanh" in res.sentences[0]


# --------------------------------------------------------------------------- initialization


def test_initial_stats_leave_training_untouched_and_see_vanishing_signals() -> None:
    info = DataInfo((1, 8, 8), 10)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    model = apply_init(build_model("deep_cnn", {"width": 8, "depth": 6}, info), "normal", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    stats = initial_stats(model, x, y, nn.functional.cross_entropy)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    acts = [v for k, v in stats.items() if k.startswith("init_act_std/")]
    grads = [k for k in stats if k.startswith("init_grad_std/")]
    assert len(acts) == 6 and len(grads) == 7  # six ReLUs; six convs and the head
    assert acts[-1] < 0.01 * acts[0]  # N(0, 0.01) weights: the signal vanishes with depth
    kaiming = initial_stats(
        apply_init(build_model("deep_cnn", {"width": 8, "depth": 6}, info), "kaiming", seed=0),
        x,
        y,
        nn.functional.cross_entropy,
    )
    k_acts = [v for k, v in kaiming.items() if k.startswith("init_act_std/")]
    assert 0.1 < k_acts[-1] / k_acts[0] < 10


def test_fit_logs_step0_stats_with_epoch_one_and_trains_the_same_without_them() -> None:
    from pipeline.config import TrainConfig
    from pipeline.tasks import task_for
    from pipeline.train import fit

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 8, 8, generator=g), torch.randint(0, 10, (96,), generator=g)
    data = Splits(x, y, x[:32], y[:32], x[:32], y[:32], DataInfo((1, 8, 8), 10))
    states = {}
    for diagnostics in (True, False):
        torch.manual_seed(0)
        model = build_model("mlp", {"hidden": [16, 16], "dropout": 0.5}, data.info)  # dropout draws random numbers
        cfg = TrainConfig(epochs=2, batch_size=32, diagnostics=diagnostics)
        result = fit(model, data, task_for("classification"), cfg, seed=0)
        states[diagnostics] = model.state_dict()
        first, second = result.history
        assert any(k.startswith("init_grad_std/") for k in first) == diagnostics
        assert not any(k.startswith("init_") for k in second)
    assert all(torch.equal(states[True][k], states[False][k]) for k in states[True])


def test_init_signal_section(tmp_path) -> None:
    runs = []
    for init, first, last in (("normal", 0.01, 1e-9), ("kaiming", 1.0, 0.9)):
        cfg = _cfg({"name": "mlp", "init": init})
        run = _run(cfg, init, {"val_accuracy": [0.1, 0.2], "train_loss": [2.3, 2.0], "val_loss": [2.31, 2.0]})
        for i, v in enumerate([first, (first * last) ** 0.5, last]):
            run["history"][f"init_act_std/{2 * i + 2}"] = [[1, v]]
        runs.append(run)
    res = init_signal.init_signal(_ctx(tmp_path, runs))
    text = _descriptive(" ".join(res.sentences))
    assert "Validation loss after the first epoch (mean ± std over seeds" in text and "normal 2.310 (n=1)" in text
    assert "normal 0.01 → 1e-09 (vanishes" in text and "kaiming 1 → 0.9 (is preserved" in text
    assert list(res.tables["step0_act_std"]["normal"]) == ["2", "4", "6"]
    assert (tmp_path / "figures" / "step0_act_std.png").is_file()


# --------------------------------------------------------------------------- augmentation


def test_gap_rows_and_sentences() -> None:
    fits = {
        "none": [{"train_accuracy": 1.0, "val_accuracy": 0.90}, {"train_accuracy": 1.0, "val_accuracy": 0.92}],
        "crop": [{"train_accuracy": 0.95, "val_accuracy": 0.93}, {"train_accuracy": 0.97, "val_accuracy": 0.93}],
        "flip": [{"train_accuracy": 0.90, "val_accuracy": 0.85}, {"train_accuracy": 0.92, "val_accuracy": 0.85}],
    }
    rows = generalization_gap.gap_rows(fits)
    assert rows["none"]["gap"]["mean"] == pytest.approx(0.09)
    text = _descriptive(generalization_gap.gap_sentence(rows))
    s = rows["crop"]["gap"]
    assert f"crop 0.030 ± 0.014 [{s['ci_low']:.3f}, {s['ci_high']:.3f}] (n=2) (train 0.960, val 0.930)" in text
    assert text.index("none") < text.index("crop") < text.index("flip")  # the study's order, not ranked by gap
    assert generalization_gap.gap_sentence({}) is None


# --------------------------------------------------------------------------- recurrent cells


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_param_budget_sets_the_hidden_size(cell: str) -> None:
    model = build_model("rnn_classifier", {"cell": cell, "param_budget": 5000}, DataInfo((1, 8, 8), 10))
    assert abs(recurrent_parameter_count(model) - 5000) / 5000 < 0.05
    assert model.head.in_features == model.hidden_size


def test_recurrent_counts_confirm_gate_ratios() -> None:
    info = DataInfo((1, 8, 8), 10)
    configs = {
        f"{cell},{budget}": _cfg({"name": "rnn_classifier", "cell": cell, "hidden_size": 32, "param_budget": budget})
        for cell in ("rnn", "lstm", "gru")
        for budget in (None, 3000)
    }
    counts = recurrent_params.recurrent_counts(configs, lambda c: build_model(c.model.name, c.model.options, info))
    assert counts["lstm,None"]["recurrent_params"] == 4 * counts["rnn,None"]["recurrent_params"]
    assert counts["rnn,3000"]["hidden_size"] > 32 > counts["lstm,3000"]["hidden_size"]
    text = recurrent_params.ratio_sentence(counts)
    assert "LSTM has 4.00×" in text and "GRU has 3.00×" in text and "as its gate count predicts" in text
    # a count that breaks the expectation is reported as such, not confirmed
    counts["gru,None"]["recurrent_params"] += 100
    assert "not the 3× expected" in recurrent_params.ratio_sentence(counts)


def test_recurrent_params_section_states_each_cell_with_its_size(tmp_path, monkeypatch) -> None:
    runs = []
    for cell, budget, acc in (("rnn", None, 0.90), ("lstm", None, 0.93), ("rnn", 3000, 0.95), ("lstm", 3000, 0.91)):
        for seed in (0, 1):
            cfg = _cfg({"name": "rnn_classifier", "cell": cell, "hidden_size": 32, "param_budget": budget}, seed=seed)
            runs.append(_run(cfg, f"cell={cell},param_budget={budget}", {"val_accuracy": [0.5, acc + 0.01 * seed]}))
    _fake_loader(monkeypatch, {}, _digits_like())
    ctx = _ctx(tmp_path, runs)
    ctx.data_dir = tmp_path
    text = _descriptive(" ".join(recurrent_params.recurrent_params(ctx).sentences))
    assert "Per cell, val_accuracy at each run's last epoch" in text
    assert "at equal hidden size, rnn (hidden 32, 1,344 recurrent and " in text and ") 0.905 ± 0.007 [" in text
    assert "(the cells differ in size here, so a difference between them is not one at matched parameters)" in text
    assert "; at equal parameters, rnn (hidden " in text


# --------------------------------------------------------------------------- gradient clipping


def test_clipping_counts_divergence_and_active_thresholds(tmp_path) -> None:
    runs = []
    for clip, outcome, loss, norm in (
        (None, "diverged", [2.0, float("nan")], [5.0]),
        (None, "completed", [2.0, 1.0], [3.0, 2.0]),
        (1.0, "completed", [2.0, 0.5], [2.0, 1.5]),
        (10.0, "completed", [2.0, 0.8], [2.0, 1.5]),
    ):
        cfg = _cfg({"name": "rnn_classifier"}, train={"grad_clip": clip}, seed=len(runs))
        hist = {"train_loss": loss, "train_grad_norm": norm, "val_accuracy": [0.5, 0.6]}
        runs.append(_run(cfg, str(clip), hist, outcome=outcome))
    res = clipping.clipping(_ctx(tmp_path, runs))
    text = _descriptive(" ".join(res.sentences))
    assert "1 of 4 runs diverged (loss NaN/inf): no clipping 1/2, clip 10 0/1, clip 1 0/1." in text
    assert (
        "At clip 1 the mean pre-clip gradient norm (1.75) exceeds the threshold" in text and "clip 10 the" not in text
    )
    assert (tmp_path / "figures" / "grad_norm_traces.png").is_file()


# --------------------------------------------------------------------------- text studies' sections


def test_oov_accuracy_section_states_both_accuracies_and_the_sizes(tmp_path) -> None:
    runs = []
    for char, oov, overall, n in (
        (False, [0.85, 0.87], [0.990, 0.992], 1000.0),
        (True, [0.97, 0.99], [0.995, 0.997], 1500.0),
    ):
        for seed, (o, a) in enumerate(zip(oov, overall)):
            run = _run(_cfg({"name": "mlp"}, seed=seed), f"char={char}", {"val_accuracy": [0.5]}, n_params=n)
            run["final"].update(test_oov_accuracy=o, test_accuracy=a, test_oov_fraction=0.04)
            runs.append(run)
    res = oov_accuracy.oov_accuracy(_ctx(tmp_path, runs, "test_accuracy"))
    text = _descriptive(" ".join(res.sentences))
    s = res.tables["oov"]["char=True"]
    assert f"char=True {describe(s, 4)} and {describe(res.tables['all']['char=True'], 4)}" in text
    assert "on out-of-vocabulary words (4.0% of test tokens)" in text
    assert "The variants differ in size (char=False 1,000, char=True 1,500 parameters)" in text
    assert "a difference between variants on test_oov_accuracy is tested only where one of the study's claims" in text
    assert res.tables["values"]["test_oov_accuracy"] == {"char=False": [0.85, 0.87], "char=True": [0.97, 0.99]}


def test_lm_perplexity_states_the_lstm_beside_the_windows_with_their_sizes(tmp_path) -> None:
    runs = []
    for model, label, ppl, n in (
        ({"name": "ngram_lm", "n": 2, "embedding_dim": 16}, "n2", [27.0, 27.2], 1000.0),
        ({"name": "ngram_lm", "n": 3, "embedding_dim": 16}, "n3", [26.0, 26.4], 1100.0),
        ({"name": "lstm_lm", "embedding_dim": 16}, "lstm", [22.4, 22.5], 2500.0),
    ):
        for seed, p in enumerate(ppl):
            run = _run(_cfg(model, {"name": "grammar_lm"}, seed=seed), label, {"val_perplexity": [40.0]}, n_params=n)
            run["final"]["test_perplexity"] = p
            runs.append(run)
    res = lm_perplexity.lm_perplexity(_ctx(tmp_path, runs, "test_perplexity", "min"))
    text = _descriptive(" ".join(res.sentences))
    assert "By N (n-gram, embedding 16), test_perplexity of each run's best-validation checkpoint" in text
    assert "N=2 27.10 ± 0.14 [" in text and "Without a fixed window, lstm 22.45 ± 0.07 [" in text
    assert (
        "Sizes differ: lstm has 2,500 parameters, the n-gram models 1,000 to 1,100; a difference between them here "
        "is not one at matched parameters." in text
    )
    assert lm_perplexity.size_sentence(
        {
            "a": {"family": "lstm_lm", "n_params": 1050.0},
            **{"b": {"family": "ngram_lm", "n_params": 1000.0}, "c": {"family": "ngram_lm", "n_params": 1100.0}},
        }
    ) == ("Sizes: a has 1,050 parameters, the n-gram models 1,000 to 1,100.")


# --------------------------------------------------------------------------- claims and their per-seed values


@pytest.mark.parametrize("name", STUDIES)
def test_claims_name_the_default_profiles_variants(name: str) -> None:
    params = load_params(REPO / "params.yaml")
    study = load_study(REPO / "experiments" / f"{name}.yaml", params, str(REPO / "params.yaml"))
    variants = {study.variant(p) for p in grid_points(study)}
    for claim in study.spec.expect:
        named = [claim.a] if isinstance(claim.a, str) else list(claim.a)
        named += [] if claim.b is None else [claim.b] if isinstance(claim.b, str) else list(claim.b)
        assert set(named) <= variants, (name, claim.claim, set(named) - variants)
        if claim.metric and "." in claim.metric:  # `<section>.<quantity>`: a section the study runs
            assert claim.metric.split(".", 1)[0] in study.spec.report, (name, claim.metric)


def _fake_loader(monkeypatch, models: dict[str, Trained], data: Splits) -> None:
    monkeypatch.setattr(ModelLoader, "__call__", lambda self, run: models[run["run_id"]])
    monkeypatch.setattr(ModelLoader, "load", lambda self, run: models[run["run_id"]])
    monkeypatch.setattr(ModelLoader, "data", lambda self, cfg: data)
    monkeypatch.setattr(ModelLoader, "problem", None, raising=False)


def _digits_like(n: int = 40) -> Splits:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)
    return Splits(x, y, x[:10], y[:10], x[:10], y[:10], DataInfo((1, 8, 8), 10))


def _assert_values(values: dict, quantities: set[str], seeds: dict[str, int]) -> None:
    """`tables["values"]`: quantity -> variant -> one float per seed."""
    assert set(values) == quantities
    for per_variant in values.values():
        assert {v: len(x) for v, x in per_variant.items()} == seeds
        assert all(isinstance(x, float) for xs in per_variant.values() for x in xs)


def test_maxout_hidden_params_per_seed(tmp_path, monkeypatch) -> None:
    data = _digits_like()
    runs = []
    for activation in ("relu", "maxout"):
        for seed in (0, 1):
            cfg = _cfg({"name": "mlp", "hidden": [16, 16], "activation": activation}, seed=seed)
            runs.append(_run(cfg, activation, {"val_accuracy": [0.5, 0.6]}, n_params=1.0))
    _fake_loader(monkeypatch, {}, data)
    ctx = _ctx(tmp_path, runs)
    ctx.data_dir = tmp_path
    res = maxout_params.maxout_params(ctx)
    _assert_values(res.tables["values"], {"hidden_params"}, {"relu": 2, "maxout": 2})
    # plain: (64·16 + 16) + (16·16 + 16) = 1,312 hidden weights; maxout doubles them
    assert res.tables["values"]["hidden_params"] == {"relu": [1312.0, 1312.0], "maxout": [2624.0, 2624.0]}
    assert maxout_params.maxout_params(_ctx(tmp_path, runs)).tables["values"] == {"hidden_params": {}}  # no data


def test_weights_to_reach_a_5x5_field() -> None:
    info = DataInfo((1, 8, 8), 10)
    got = {name: architectures.weights_to_reach(build_model(name, {"width": 8}, info)) for name in ARCHS}
    # one 5x5 filter: 25 weights per channel pair; two stacked 3x3: 18 (GoogLeNet's 3x3 branch after its 3x3 stem)
    assert got == {"lenet": 25.0, "alexnet": 25.0, "vgg": 18.0, "googlenet": 18.0, "resnet": 18.0}
    assert architectures.weights_to_reach(nn.Sequential(nn.Conv2d(1, 4, 1), nn.Conv2d(4, 4, 3))) is None
    text = architectures.field_sentence({v: [w, w] for v, w in got.items()})
    assert "vgg 18" in text and "use 18/25 = 0.72 of the weights of LeNet's one 5x5" in _descriptive(text)


def test_generalization_gap_values_and_label_breaking_control(tmp_path) -> None:
    fits = {
        "none": [{"train_accuracy": 1.0, "val_accuracy": 0.90}, {"train_accuracy": 1.0, "val_accuracy": 0.92}],
        "affine": [{"train_accuracy": 0.97, "val_accuracy": 0.94}, {"train_accuracy": 0.96, "val_accuracy": 0.95}],
    }
    values = generalization_gap.per_seed_values(fits)
    _assert_values(values, {"gap", "train_accuracy", "val_accuracy"}, {"none": 2, "affine": 2})
    assert values["gap"]["none"] == pytest.approx([0.10, 0.08])
    runs = [
        _run(_cfg({"name": "lenet"}, train={"augment": a}), a, {"val_accuracy": [0.5]})
        for a in ("none", "crop", "flip")
    ]
    assert generalization_gap.label_breaking(runs) == ["flip"]
    assert "flip is the label-breaking control" in generalization_gap.control_sentence(["flip"])
    cifar = _cfg({"name": "lenet"}, {"name": "cifar10"}, train={"augment": "flip"})
    assert generalization_gap.label_breaking([_run(cifar, "flip", {})]) == []  # a mirrored ship is a ship


def test_clipping_values_and_learning_rate_labels(tmp_path) -> None:
    runs = []
    for lr, clip, losses in ((8.0, None, [2.0, 2.6]), (8.0, 0.05, [1.5, 0.2]), (0.8, None, [1.9, 0.3])):
        for seed in (0, 1, 2):
            cfg = _cfg({"name": "rnn_classifier"}, train={"lr": lr, "grad_clip": clip}, seed=seed)
            hist = {"train_loss": losses, "train_grad_norm": [0.5, 0.6], "val_accuracy": [0.5, 0.6]}
            runs.append(_run(cfg, f"lr={lr:g},grad_clip={clip}", hist))
    res = clipping.clipping(_ctx(tmp_path, runs))
    _assert_values(
        res.tables["values"], {"final_train_loss", "loss_rises"}, {v: 3 for v in {r["tags"]["variant"] for r in runs}}
    )
    assert res.tables["values"]["final_train_loss"]["lr=8,grad_clip=None"] == [2.6] * 3
    text = _descriptive(" ".join(res.sentences))
    assert "lr 8, no clipping 0/3, lr 8, clip 0.05 0/3, lr 0.8, no clipping 0/3" in text
    assert "Per setting, val_accuracy at each run's last epoch" in text and "final training loss 2.60" in text


def test_degradation_section_measures_training_error_per_depth(tmp_path, monkeypatch) -> None:
    data = _digits_like(60)
    runs, models = [], {}
    for blocks, residual, loss in ((1, False, [2.0, 0.1]), (4, False, [2.2, 0.9]), (4, True, [1.8, 0.05])):
        for seed in (0, 1):
            cfg = _cfg({"name": "resnet", "width": 4, "blocks": blocks, "residual": residual}, seed=seed)
            run = _run(cfg, f"blocks={blocks},residual={residual}", {"train_loss": loss, "val_accuracy": [0.3, 0.5]})
            torch.manual_seed(seed)
            models[run["run_id"]] = Trained(build_model("resnet", cfg.model.options, data.info).eval(), cfg, data, run)
            runs.append(run)
    _fake_loader(monkeypatch, models, data)
    res = degradation.degradation(_ctx(tmp_path, runs))
    seeds = {"blocks=1,residual=False": 2, "blocks=4,residual=False": 2, "blocks=4,residual=True": 2}
    _assert_values(res.tables["values"], {"train_error", "train_loss", "val_error"}, seeds)
    assert {v: r["layers"] for v, r in res.tables["depth"].items()} == {
        "blocks=1,residual=False": 8,
        "blocks=4,residual=False": 26,
        "blocks=4,residual=True": 26,
    }
    text = _descriptive(" ".join(res.sentences))
    assert "plain, 8 layers" in text and "residual, 26 layers" in text
    assert "A difference between variants on train_error is tested only where one of the study's claims" in text
    assert (tmp_path / "figures" / "train_loss_by_depth.png").is_file()


def test_degradation_sentences_state_each_depth_without_comparing() -> None:
    rows = {
        "p8": {"layers": 8, "residual": False, "train_error": stat([0.0, 0.0], "train_error", (0.0, 1.0))},
        "p26": {"layers": 26, "residual": False, "train_error": stat([0.10, 0.14], "train_error", (0.0, 1.0))},
    }
    text = _descriptive(" ".join(degradation.degradation_sentences(rows)))
    assert "plain, 8 layers 0.0000 ± 0.0000 (n=2), 26 layers 0.1200 ± 0.0283 [" in text


# --------------------------------------------------------------------------- end to end


def _stage(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_stage", REPO / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_logistic_and_regression_end_to_end_tiny(tmp_path, ray_local, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PIPELINE_ROOT", str(tmp_path))  # MLflow artifacts under tmp_path, not the repo
    studies = ["logistic", "regression"]
    params = str(write_params(tmp_path, studies=studies, **SERIAL_TRIALS))
    data = str(tmp_path / "data")
    assert _stage("prepare").main(["--params", params, "--experiments", str(REPO / "experiments"), "--out", data]) == 0
    for name in studies:
        spec, results, report = (
            str(REPO / "experiments" / f"{name}.yaml"),
            tmp_path / "results" / name,
            tmp_path / "reports" / name,
        )
        assert _stage("study").main(["--params", params, "--study", spec, "--data", data, "--out", str(results)]) == 0
        runs = json.loads((results / "runs.json").read_text())
        assert len(runs) == 5 and {r["status"] for r in runs} == {"FINISHED"}
        assert all(any(k.startswith("init_grad_std/") for k in r["history"]) for r in runs)
        argv = ["--params", params, "--study", spec, "--results", str(results), "--data", data, "--out", str(report)]
        assert _stage("report").main(argv) == 0
        analysis = json.loads((report / "analysis.json").read_text())
        assert (report / "summary.md").is_file() and (report / "metrics.json").is_file()
        assert analysis["answer"] in (report / "summary.md").read_text()
        if name == "logistic":
            assert "Bayes classifier on the same test points" in analysis["answer"]
            assert (report / "figures" / "decision_boundary.png").is_file()
            assert set(analysis["extras"]["decision_boundary"]["learned_boundary"]) >= {"w", "b", "angle_deg"}
        else:
            assert "At the true degree 3 SGD recovers" in analysis["answer"]
            assert len(analysis["extras"]["polynomial_fit"]["coefficients"]) == 5
            assert (report / "figures" / "mse_vs_degree.png").is_file()
