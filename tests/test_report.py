"""The report stage on a synthetic MLflow store whose runs we wrote ourselves.

Each run's validation curve rises and then stays flat for its last 3 of 5 epochs (converged), and its test
accuracy (the best-validation checkpoint's) is its final validation value - 0.01. Expected numbers by hand:
    a: test 0.89, 0.91, 0.93 -> mean 0.91, sample std 0.02; 95% interval on the logit scale with the Cox-type
       correction (z = logit(x), m = mean z, s² = var z, k = 1 - 2·expit(m), centre m + k·s²/2,
       se = sqrt(s²/3 + k²·s⁴/4), t(0.975, 2) = 4.302653) = [0.842684, 0.949387]
    b: test 0.79, 0.81, 0.83 (+ one diverged run) -> Welch vs a: t = 0.1 / sqrt(2 * 0.02² / 3) = 6.1237, df = 4,
       two-sided p = 0.003602, one-sided (the claim "a beats b" orients the pair) 0.001801; Holm over the study's
       family, the 3 headline pairs (a-c and c-b are untestable, p = 1): 3 × 0.001801 = 0.005403
    c: test 0.90 (one seed) -> ranked between a and b, not testable
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_html import fake_runs, fake_study

from pipeline import plots, tracking
from pipeline.data.base import Splits
from pipeline.datainfo import DataInfo
from pipeline.report.analysis import analyze, headline_metric, metrics_file
from pipeline.report.build import build_report, conclude
from pipeline.report.chance import Chance, ChanceLevels, chance_level
from pipeline.report.confusion import confusion
from pipeline.report.markdown import format_stat
from pipeline.report.superiority import ARTIFACT, download_test_correct, superiority
from pipeline.sections.common import stat

VALUES = {"a": [0.90, 0.92, 0.94], "b": [0.80, 0.82, 0.84], "c": [0.91]}
N_PARAMS = {"a": 1000, "b": 2000, "c": 1000}
EPOCH_SECONDS = {"a": 1.0, "b": 2.0, "c": 1.0}
EPOCHS = 5
RISE = [0.2, 0.05, 0.0, 0.0, 0.0]  # how far below its final value each epoch's validation accuracy is
N_TEST = 40  # per-example correctness logged for P(A > B)
MODEL = {"name": "mlp", "init": "default", "options": {"hidden": [8], "activation": "relu", "dropout": 0.0}}
DATASET = {"name": "synthetic", "options": {"n_samples": 200, "n_features": 6, "n_classes": 3, "n_informative": 3}}
CLAIMS = [
    {"claim": "a beats b", "kind": "better", "a": "a", "b": "b"},
    {"claim": "b has twice a's parameters", "kind": "ratio", "a": "b", "b": "a", "metric": "n_params", "value": 2},
]


def _log(c, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()], synchronous=True)


def _child(
    uri: str, exp: str, parent: str, variant: str, seed: int, final: float, art: Path, outcome: str = "completed"
) -> str:
    c = tracking.client(uri)
    run_id = c.create_run(
        exp,
        run_name=f"demo-{variant}-s{seed}",
        tags={"mlflow.parentRunId": parent, "variant": variant, "seed": str(seed), "outcome": outcome},
    ).info.run_id
    tracking.log_params(uri, run_id, {"model": MODEL, "dataset": DATASET, "seed": seed})
    _log(c, run_id, {"n_params": N_PARAMS[variant], "flops_per_sample": 500}, step=0)
    for epoch in range(1, EPOCHS + 1):
        value = final - RISE[epoch - 1] if outcome == "completed" else float("nan")
        _log(
            c,
            run_id,
            {"epoch": epoch, "val_accuracy": value, "val_loss": 1.0 / epoch, "epoch_seconds": EPOCH_SECONDS[variant]},
            step=epoch,
        )
    if outcome == "completed":
        _log(c, run_id, {"test_accuracy": final - 0.01}, step=EPOCHS)
        # per-example correctness: the first round(accuracy * N_TEST) examples right (paired across runs)
        correct = (np.arange(N_TEST) < round((final - 0.01) * N_TEST)).astype(np.int8)
        np.save(art / ARTIFACT, correct)
        c.log_artifact(run_id, str(art / ARTIFACT))
    c.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from pipeline.data import prepare
    from pipeline.data.base import LoadContext

    out = tmp_path_factory.mktemp("prepared")
    ctx = LoadContext(seed=0, root=out / "raw", download=False)
    prepare(DATASET["name"], DATASET["options"], ctx, out)
    prepare("poly_regression", {}, ctx, out)
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory, prepared) -> dict:
    """A store with a parent run and 8 child runs, exported to results/, and the report built from it."""
    tmp = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    c = tracking.client(uri)
    exp = c.create_experiment("demo", artifact_location=(tmp / "artifacts").as_uri())
    parent = c.create_run(exp, run_name="demo-sweep", tags={"sweep_parent": "true"}).info.run_id
    art = tmp / "art"
    art.mkdir()
    ids = {}
    for variant, values in VALUES.items():
        for seed, v in enumerate(values):
            ids[(variant, seed)] = _child(uri, exp, parent, variant, seed, v, art)
    ids[("b", 3)] = _child(uri, exp, parent, "b", 3, 0.0, art, outcome="diverged")
    c.set_terminated(parent, "FINISHED")

    # the best run (a, seed 2) gets a real model: random weights, so the expected matrix is computed below
    best = ids[("a", 2)]
    from pipeline.data import load_prepared
    from pipeline.models import build_model

    data = load_prepared(prepared, DATASET["name"], DATASET["options"])
    torch.manual_seed(0)
    model = build_model(MODEL["name"], MODEL["options"], data.info)
    torch.save(model.state_dict(), art / "best_model.pt")
    # the resolved config, complete as a trial saves it: the report's model loader validates it
    resolved = {"study": "demo", "model": MODEL, "dataset": DATASET, "train": {}, "seed": 2}
    (art / "config.yaml").write_text(yaml.safe_dump(resolved))
    c.log_artifact(best, str(art / "best_model.pt"))
    c.log_artifact(best, str(art / "config.yaml"))

    results = tmp / "results"
    results.mkdir()
    runs = tracking.export_runs(uri, exp, parent)
    (results / "runs.json").write_text(json.dumps(runs))
    sweep = {"study": "demo", "tracking_uri": uri, "experiment_id": exp, "parent_run_id": parent, "seeds": [0, 1, 2]}
    (results / "sweep.json").write_text(json.dumps(sweep))
    out = tmp / "report"
    spec = fake_study("demo", "Which variant is best?", expect=CLAIMS)
    built = build_report(spec, results, out, data_dir=prepared)
    with torch.no_grad():
        pred = model(data.x_test).argmax(dim=-1).numpy()
    return {
        "uri": uri,
        "exp": exp,
        "parent": parent,
        "ids": ids,
        "out": out,
        "results": results,
        "built": built,
        "runs": runs,
        "data": data,
        "truth": data.y_test.numpy(),
        "pred": pred,
    }


def test_headline_is_the_checkpoints_test_metric_with_intervals_in_range(study):
    analysis = json.loads((study["out"] / "analysis.json").read_text())
    assert (analysis["metric"], analysis["study_metric"], analysis["metric_source"]) == (
        "test_accuracy",
        "val_accuracy",
        "test",
    )
    a, b, c = (analysis["variants"][v] for v in "abc")
    assert (a["rank"], c["rank"], b["rank"]) == (1, 2, 3)
    stat = a["test_accuracy"]
    assert stat["values"] == pytest.approx([0.89, 0.91, 0.93])
    assert (stat["mean"], stat["std"]) == (pytest.approx(0.91), pytest.approx(0.02))
    assert stat["ci_low"] == pytest.approx(0.842684, abs=1e-6) and stat["ci_high"] == pytest.approx(0.949387, abs=1e-6)
    assert stat["scale"] == "logit"
    assert c["test_accuracy"]["ci_low"] is None and c["test_accuracy"]["n"] == 1
    assert (b["runs"], b["finished"], b["diverged"]) == (4, 3, 1)
    for row in analysis["variants"].values():  # every interval stays inside [0, 1]
        s = row["test_accuracy"]
        assert s["ci_low"] is None or 0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 1


def test_comparisons_are_welch_holm_over_all_pairs(study):
    comp = json.loads((study["out"] / "analysis.json").read_text())["comparisons"]
    assert comp["design"] == "all_pairs" and comp["family_size"] == 3
    assert comp["method"] == "Welch t-tests, Holm-adjusted over the study's 3 tests"
    pairs = {(p["a"], p["b"]): p for p in comp["pairs"]}
    assert pairs[("a", "b")]["p_value"] == pytest.approx(3 * 0.0036022 / 2, abs=1e-6)
    assert pairs[("a", "b")]["method"].startswith("one-sided Welch t-test (H1: a above b, as a claim states)")
    assert pairs[("a", "b")]["significant"]
    assert pairs[("a", "c")]["p_value"] == 1.0 and "one seed" in pairs[("a", "c")]["reason"]


def test_answer_names_metric_checkpoint_and_follows_the_evidence(study):
    answer = study["built"]["analysis"]["answer"]
    claims, headline = answer.split("\n\n")[:2]
    assert claims.startswith("Claims (1, tested in the study's family: 0 confirmed, 0 contradicted, 1 inconclusive):")
    assert "- inconclusive: a beats b (b had diverged runs)" in claims
    assert "Arithmetic checks, not inference: 1 of 1 hold." in claims
    assert headline.startswith(
        "Measured on test_accuracy, the test score of each run's best-validation checkpoint (its epoch with the "
        "best val_accuracy); 1-3 seeds per variant"
    )
    # a and c: c has one seed, so no test, so no ranking
    assert "The two highest means are a (0.91 [0.8427, 0.9494]) and c (0.9, one seed); the test cannot" in answer
    assert "ranks first" not in answer
    assert "Welch t-tests, Holm-adjusted over the study's 3 tests (alpha 0.05)" in answer
    # significant, but b lost a run to divergence: not "a is better than b"
    assert "a scores above b (p=0.0054), but b had diverged runs, so that is no finding" in answer
    assert "a is better than" not in answer
    assert "a and c cannot be told apart with 1 seed" in answer and "one seed: a test needs at least two" in answer
    assert "Chance level: " in answer and "majority-class accuracy" in answer
    assert "With ≤ 3 seeds, seed variance is poorly known" in answer
    assert "1 run(s) diverged" in answer and "b: 1/4" in answer
    assert "P(a's mean test accuracy > c's)" in answer  # the top pair, from the per-example artifacts


def test_claims_get_verdicts_in_analysis_summary_and_metrics(study):
    analysis = json.loads((study["out"] / "analysis.json").read_text())
    claims = {c["claim"]: c for c in analysis["claims"]}
    assert claims["a beats b"]["verdict"] == "inconclusive" and claims["a beats b"]["type"] == "claim"
    assert "b had diverged runs, so the runs cannot decide (claimed side significant" in claims["a beats b"]["reason"]
    assert "P(a > b) over seeds and test examples" in claims["a beats b"]["reason"]
    (check,) = analysis["checks"]  # the parameter ratio is arithmetic, counted apart
    assert check["claim"] == "b has twice a's parameters" and check["verdict"] == "confirmed"
    summary = (study["out"] / "summary.md").read_text()
    assert summary.index("**Answer") < summary.index("**Claims**") < summary.index("**Checks**")
    assert summary.index("**Checks**") < summary.index("| rank |")
    assert "| b has twice a's parameters | **confirmed** |" in summary


def test_metrics_file_is_a_few_flat_numbers(study):
    metrics = json.loads((study["out"] / "metrics.json").read_text())
    assert metrics == {
        "best_test_accuracy": pytest.approx(0.91),
        "margin_to_runner_up": pytest.approx(0.01),
        "significant_pairs": 1,
        "family_size": 3,
        "claims_confirmed": 0,
        "claims_contradicted": 0,
        "claims_inconclusive": 1,
        "claims_total": 1,
        "checks_passed": 1,
        "checks_total": 1,
        "runs": 8,
        "runs_failed": 1,
    }
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values())


def test_table_and_summary(study):
    summary = (study["out"] / "summary.md").read_text()
    assert "| rank | variant | n | test_accuracy | p vs 1st | checks | n_params |" in summary
    assert "| 1 | a | 3/3 | 0.91 ± 0.02 [0.8427, 0.9494] | – | ok | 1000 |" in summary
    assert "| 3 | b | 3/4 | 0.81 ± 0.02 [" in summary and "| 0.0054 * | diverged 1/4 |" in summary
    assert "headline metric `test_accuracy` (max) of each run's best-validation checkpoint" in summary


def test_superiority_from_the_logged_correctness(study):
    sup = study["built"]["analysis"]["superiority"]
    top = sup["pairs"][0]
    assert (top["a"], top["b"], top["seeds_a"], top["seeds_b"], top["n_examples"]) == ("a", "c", 3, 1, N_TEST)
    assert "one seed on a side" in top["note"]
    # the `better` claim's pair too; a's examples are a superset of b's, so a's mean wins in nearly every resample
    ab = next(p for p in sup["pairs"] if (p["a"], p["b"]) == ("a", "b"))
    assert ab["p_a_better"] > 0.95 and ab["difference"] == pytest.approx(0.1)


def test_download_test_correct_from_a_store(tmp_path):
    """A real (SQLite + local artifacts) store made with mlflow itself: arrays back, or the reason there are none."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = tracking.client(uri)
    exp = c.create_experiment("x", artifact_location=(tmp_path / "artifacts").as_uri())
    with_art, without, bad = (c.create_run(exp).info.run_id for _ in range(3))
    np.save(tmp_path / ARTIFACT, np.array([1, 0, 1, 1], dtype=np.int8))
    c.log_artifact(with_art, str(tmp_path / ARTIFACT))
    (tmp_path / "bad").mkdir()
    np.save(tmp_path / "bad" / ARTIFACT, np.array([[0.5, 2.0]]))
    c.log_artifact(bad, str(tmp_path / "bad" / ARTIFACT))

    arrays, why = download_test_correct(uri, [with_art])
    assert why == "" and arrays[with_art].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert download_test_correct(uri, [with_art, without]) == (
        {},
        f"run {without} has no {ARTIFACT} artifact (logged by trials of this version on)",
    )
    assert "not a flat array of 0/1" in download_test_correct(uri, [bad])[1]
    gone = tmp_path / "nowhere.db"
    assert download_test_correct(f"sqlite:///{gone}", [with_art]) == ({}, f"no MLflow database at {gone}")
    assert not gone.exists()
    runs = fake_runs({"x": [0.9, 0.9]})
    assert superiority(runs, "test_perplexity", [("x", "x")], uri)["skipped"].startswith("per-example correctness")


def test_analysis_links_every_run(study):
    analysis = json.loads((study["out"] / "analysis.json").read_text())
    linked = {(v, r["seed"]): r["run_id"] for v, row in analysis["variants"].items() for r in row["run_ids"]}
    assert linked == study["ids"]
    assert analysis["parent_run_id"] == study["parent"]


def test_curves_csv(study):
    rows = (study["out"] / "curves" / "a.csv").read_text().splitlines()
    assert rows[0] == "epoch,mean,std,n"
    last = rows[EPOCHS].split(",")
    assert float(last[1]) == pytest.approx(0.92) and float(last[2]) == pytest.approx(0.02) and last[3] == "3"
    first = rows[1].split(",")
    assert float(first[1]) == pytest.approx(0.72)  # 0.2 below the final value, as logged


def test_figures_exist_and_are_images(study):
    import matplotlib.image

    names = {Path(p).name for p in study["built"]["figures"]}
    assert {
        "curve_val_accuracy.png",
        "curve_val_loss.png",
        "final_test_accuracy.png",
        "test_accuracy_vs_n_params.png",  # 1000 vs 2000
        "test_accuracy_vs_train_seconds.png",  # 5 s vs 10 s
        "confusion_best.png",
    } <= names
    assert "test_accuracy_vs_flops_per_sample.png" not in names  # the same for every variant
    for name in names:
        img = matplotlib.image.imread(study["out"] / "figures" / name)
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img.std() > 0.01  # not a blank canvas


def _limits(monkeypatch) -> list[tuple[float, float]]:
    """The y limits of every figure saved from now on."""
    seen: list[tuple[float, float]] = []
    save = plots._save

    def spy(fig, path):
        seen.append(fig.axes[0].get_ylim())
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    return seen


def test_bounded_metrics_keep_their_axes_in_range(tmp_path, monkeypatch):
    seen = _limits(monkeypatch)
    # a Student-t interval that leaves [0, 1] (as the old report drew it) and a throughput whose ± std crosses 0
    rows = [
        {"variant": "x", "mean": 0.97, "ci_low": 0.4, "ci_high": 1.54, "values": [0.95, 0.99], "rank": 1},
        {"variant": "y", "mean": 0.09, "ci_low": -0.37, "ci_high": 0.5, "values": [0.05, 0.13]},
    ]
    plots.bars_with_ci(rows, tmp_path / "acc.png", "test_accuracy")
    speed = [{"variant": "x", "mean": 900.0, "ci_low": -5000.0, "ci_high": 7000.0, "values": [100.0, 1700.0]}]
    plots.bars_with_ci(speed, tmp_path / "speed.png", "training samples / s")
    plots.curves_with_band({"x": [[0.5, 0.99, 1.0], [0.7, 0.9, 1.0]]}, tmp_path / "c.png", "val_accuracy")
    points = [
        {"label": "x", "x": {"mean": 1.0}, "y": {"mean": 0.98, "ci_low": 0.6, "ci_high": 1.0, "n": 2}},
        {"label": "y", "x": {"mean": 10.0}, "y": {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.7, "n": 2}},
    ]
    plots.scatter_xy(points, tmp_path / "s.png", "parameters", "test_accuracy")
    (acc, speed_lim, curve, scatter) = seen
    assert 0 <= acc[0] < acc[1] <= 1
    assert speed_lim[0] >= 0
    assert 0 <= curve[0] < curve[1] <= 1
    assert 0 <= scatter[0] < scatter[1] <= 1
    assert plots.metric_bounds("test_accuracy") == (0.0, 1.0) and plots.metric_bounds("val_f1") == (0.0, 1.0)
    assert plots.metric_bounds("test_perplexity") == (1.0, None)
    for name in ("val_loss", "epoch_seconds", "val_fd_pixels", "n_params", "samples_per_s", "flops_per_sample"):
        assert plots.metric_bounds(name) == (0.0, None), name
    assert plots.metric_bounds("val_elbo") is None and plots.metric_bounds("lr") is None


def test_confusion_matrix_of_the_best_run(study):
    conf = study["built"]["analysis"]["confusion"]
    assert (conf["variant"], conf["seed"], conf["run_id"]) == ("a", 2, study["ids"][("a", 2)])
    truth, pred = study["truth"], study["pred"]
    expected = np.zeros((3, 3), dtype=int)
    for t, p in zip(truth, pred):
        expected[t, p] += 1
    assert np.array_equal(np.array(conf["matrix"]), expected)
    assert conf["accuracy"] == pytest.approx(float(np.mean(truth == pred)))


def test_figures_and_summary_logged_to_the_parent_run(study):
    c = tracking.client(study["uri"])
    logged = {Path(a.path).name for a in c.list_artifacts(study["parent"], "report/figures")}
    assert logged == {Path(p).name for p in study["built"]["figures"]}
    assert c.get_run(study["parent"]).data.tags["mlflow.note.content"].startswith("# demo")


def test_report_builds_without_a_store_or_data(study, tmp_path, caplog):
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs.json").write_text((study["results"] / "runs.json").read_text())
    gone = tmp_path / "nowhere" / "mlflow.db"
    sweep = {"study": "demo", "tracking_uri": f"sqlite:///{gone}", "experiment_id": "1", "parent_run_id": "x"}
    (results / "sweep.json").write_text(json.dumps(sweep))
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        built = build_report(fake_study("demo", "Q"), results, tmp_path / "out")
    assert "report not logged to MLflow: no MLflow database" in caplog.text
    analysis = built["analysis"]
    assert analysis["confusion"] == {"skipped": "no prepared data folder given"}
    assert analysis["superiority"] == {"skipped": f"no MLflow database at {gone}"}
    assert "P(" not in analysis["answer"]  # said in analysis.json only
    assert "Chance level unknown: no prepared data given (--data)." in analysis["answer"]
    assert analysis["variants"]["a"]["validity"]["at_chance"]["flagged"] is None
    assert not gone.parent.exists()  # no empty store was created on the way
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["best_test_accuracy"] == pytest.approx(0.91)


def test_report_stage_rejects_an_unknown_section_before_writing(study, tmp_path, capsys):
    import importlib.util

    from tests.conftest import TINY_SPEC, write_params, write_spec

    spec = importlib.util.spec_from_file_location("report_stage", Path(__file__).parents[1] / "stages" / "report.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    params = write_params(tmp_path)
    spec_file = write_spec(tmp_path, "demo", {**TINY_SPEC, "report": ["nosuch"]})
    out = tmp_path / "out"
    argv = ["--params", str(params), "--study", str(spec_file), "--results", str(study["results"]), "--out", str(out)]
    assert stage.main([*argv, "--no-mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{spec_file}: report.0: unknown report section 'nosuch'; allowed: " in err[0]
    assert not out.exists()


def test_confusion_skips_non_classification(study, prepared):
    # without (a, 2) the best run is (a, 1), which has no config.yaml: its params are read instead
    regression = {"dataset.name": "poly_regression"}
    runs = [
        {**r, "params": {**{k: v for k, v in r["params"].items() if not k.startswith("dataset.")}, **regression}}
        for r in study["runs"]
        if r["run_id"] != study["ids"][("a", 2)]
    ]
    analysis = analyze(runs, "val_accuracy", "max")
    sweep = {"tracking_uri": study["uri"]}
    skipped = confusion(runs, analysis, sweep, prepared)
    assert skipped == {"skipped": "task 'regression' is not single-label classification"}
    assert confusion(runs, analysis, sweep, None) == {"skipped": "no prepared data folder given"}


# --------------------------------------------------------------------------- analysis on runs without a store


def test_headline_falls_back_to_the_checkpoint_then_the_last_epoch():
    runs = fake_runs({"x": [0.5, 0.6]})
    assert headline_metric(runs, "val_accuracy") == ("val_accuracy", "last_epoch")
    for r in runs:
        r["final"]["best_val_accuracy"] = 0.7
    assert headline_metric(runs, "val_accuracy") == ("best_val_accuracy", "checkpoint")
    runs[0]["final"]["test_accuracy"] = 0.65
    assert headline_metric(runs, "val_accuracy") == ("test_accuracy", "test")


def test_zero_spread_never_gives_p_zero():
    runs = fake_runs({"x": [0.9, 0.9, 0.9], "y": [0.8, 0.8, 0.8]})
    analysis = conclude(analyze(runs, "val_accuracy", "max"), [], runs)
    (pair,) = analysis["comparisons"]["pairs"]
    assert pair["p_value"] == 1.0 and not pair["significant"] and "no spread" in pair["reason"]
    assert "x and y cannot be told apart with 3 seeds" in analysis["answer"]
    assert "no spread: seeds agree exactly" in analysis["answer"]
    assert analysis["variants"]["x"]["val_accuracy"]["spread_known"] is False


def test_not_converged_runs_are_said_and_block_a_finding():
    # fake_runs' curves rise by 0.1 every epoch up to the last: still improving, well beyond seed noise
    runs = fake_runs({"x": [0.90, 0.91, 0.92], "y": [0.50, 0.51, 0.52]})
    analysis = conclude(analyze(runs, "val_accuracy", "max"), [], runs)
    assert analysis["variants"]["x"]["validity"]["not_converged"]["flagged"]
    assert not analysis["variants"]["x"]["valid"]
    assert "x scores above y (p<0.001), but x and y have not converged, so that is no finding" in analysis["answer"]
    assert "Not converged (validation val_accuracy still improving" in analysis["answer"]
    assert "x is better than" not in analysis["answer"]


def _flat(runs: list[dict]) -> list[dict]:
    """fake_runs with flat curves: every epoch at the final value (converged)."""
    for r in runs:
        final = r["final"]["val_accuracy"]
        r["history"]["val_accuracy"] = [[s, final] for s, _ in r["history"]["val_accuracy"]]
    return runs


def test_a_significant_difference_between_valid_runs_is_stated_as_better():
    runs = _flat(fake_runs({"x": [0.90, 0.91, 0.92], "y": [0.50, 0.51, 0.52]}))
    chance = lambda rs, metric: Chance(0.1, "majority-class accuracy", 1000)  # noqa: E731
    analysis = conclude(analyze(runs, "val_accuracy", "max", chance=chance), [], runs, chance)
    assert analysis["variants"]["y"]["valid"] and analysis["variants"]["x"]["valid"]
    assert "x is better than y (p<0.001)." in analysis["answer"]
    assert "Every variant: converged, above chance and without diverged runs." in analysis["answer"]


def test_a_declared_baseline_sets_the_family():
    runs = _flat(fake_runs({"sgd": [0.80, 0.81, 0.82], "adam": [0.90, 0.91, 0.92], "rms": [0.80, 0.82, 0.84]}))
    analysis = conclude(analyze(runs, "val_accuracy", "max", baseline="sgd"), [], runs)
    comp = analysis["comparisons"]
    assert comp["design"] == "vs_baseline" and comp["family_size"] == 2
    assert {(p["a"], p["b"]) for p in comp["pairs"]} == {("adam", "sgd"), ("rms", "sgd")}
    assert "Welch t-tests, Holm-adjusted over the study's 2 tests" in analysis["answer"]
    assert "the design tests each variant against the baseline only" in analysis["answer"]
    assert "sgd is worse than adam" in analysis["answer"]
    assert "sgd and rms cannot be told apart with 3 seeds" in analysis["answer"]
    assert "could not have been detected" in analysis["answer"]
    missing = conclude(analyze(runs, "val_accuracy", "max", baseline="nosuch"), [], runs)
    assert (
        missing["comparisons"]["design"] == "all_pairs" and "baseline nosuch has no finished run" in missing["answer"]
    )


def test_target_is_censored_not_imputed():
    runs = fake_runs({"relu": [0.5, 0.6], "tanh": [0.4, 0.45]})
    for r in runs:
        r["tags"]["target_reached"] = "false"
        r["final"]["epochs_to_target"] = 4.0  # what trials record for "never": epochs + 1
    analysis = conclude(analyze(runs, "val_accuracy", "max", {"metric": "val_accuracy", "value": 0.9}), [], runs)
    assert "No run reached val_accuracy ≥ 0.9 within its epochs." in analysis["answer"]
    runs[0]["tags"]["target_reached"] = "true"
    runs[0]["final"]["epochs_to_target"] = 2.0
    analysis = conclude(analyze(runs, "val_accuracy", "max", {"metric": "val_accuracy", "value": 0.9}), [], runs)
    tt = analysis["time_to_target"]["variants"]
    # relu: one run at epoch 2, one censored at 3 -> Kaplan-Meier median 2; Clopper-Pearson of 1/2
    assert (tt["relu"]["n_reached"], tt["relu"]["median_epochs"]) == (1, 2.0)
    assert tt["relu"]["fraction_low"] == pytest.approx(0.0126, abs=1e-4)
    assert tt["tanh"]["median_epochs"] is None
    assert "relu 1/2 runs (median 2 epochs) and tanh 0/2 runs (median not reached)" in analysis["answer"]
    # described, not compared: a pair is tested only where a claim names it (tests/test_claims.py)
    assert "Epochs to target are tested only for the pairs a claim names" in analysis["answer"]
    assert "fastest" not in analysis["answer"] and "epochs + 1" not in analysis["answer"]


def test_stat_keeps_intervals_in_range():
    s = stat([0.90, 0.99, 1.0], "test_accuracy")
    assert 0 < s["ci_low"] < s["mean"] < s["ci_high"] <= 1
    s = stat([0.1, 2.0], "train_seconds")
    assert s["ci_low"] > 0
    assert stat([21450.0] * 3, "n_params")["spread_known"] is False
    # a range the name does not give, passed in; seeds outside the name's range get an unbounded interval, said
    assert stat([0.01, 0.3], "train_error", (0.0, 1.0))["ci_low"] > 0
    s = stat([-0.2, 0.5, 0.9], "test_accuracy")
    assert s["scale"] == "identity" and "outside the usual range (0.0, 1.0) of test_accuracy" in s["note"]
    assert stat([None, float("nan")], "test_accuracy") == {"values": []}


def test_section_summaries_stay_in_range():
    """What the issue found in a default run's extras: resnet samples/s [-2,666, 14,521], an accuracy [0.234,
    1.463], a training loss down to -0.012. Every section summarizes through `stat` now."""
    from pipeline.sections.common import bar_stats

    accuracy = bar_stats({"word": [0.6, 0.99], "char": [0.97, 0.999]}, "accuracy_negation")
    speed = bar_stats({"resnet": [500.0, 11000.0], "vgg": [3000.0, 2500.0, 9000.0]}, "samples_per_s")
    for s in accuracy.values():
        assert 0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 1, s
    for s in [*speed.values(), stat([0.001, 0.0102, 0.05], "train_loss")]:
        assert 0 <= s["ci_low"] <= s["mean"] <= s["ci_high"], s


def test_metrics_file_without_claims_or_a_runner_up():
    runs = fake_runs({"x": [0.5, 0.6]})
    analysis = conclude(analyze(runs, "val_accuracy", "max"), [], runs)
    assert metrics_file(analysis) == {
        "best_val_accuracy": pytest.approx(0.55),
        "family_size": 0,
        "claims_confirmed": 0,
        "claims_contradicted": 0,
        "claims_inconclusive": 0,
        "claims_total": 0,
        "checks_passed": 0,
        "checks_total": 0,
        "runs": 2,
        "runs_failed": 0,
        "significant_pairs": 0,
    }


# --------------------------------------------------------------------------- chance levels


def _splits(y_train, y_test, task="classification", num_classes=3, **extra) -> Splits:
    x = torch.zeros(len(y_train), 1)
    return Splits(
        x, torch.as_tensor(y_train), x[:1], torch.as_tensor(y_test)[:1], x[: len(y_test)], torch.as_tensor(y_test),
        DataInfo((1,), num_classes, task, extra),
    )  # fmt: skip


def test_chance_levels_per_task():
    d = _splits([0, 0, 0, 1, 2], [0, 1, 1, 2])
    assert chance_level("classification", "test_accuracy", d).level == pytest.approx(0.25)
    # macro-F1 of always "0": class 0 has F1 2·1 / (2·1 + 3) = 0.4, classes 1 and 2 score 0 -> 0.4 / 3
    assert chance_level("classification_f1", "test_f1", d).level == pytest.approx(0.4 / 3)
    # training frequencies add-one smoothed: (4, 2, 2) / 8 -> test CE = -(log .5 + 2 log .25 + log .25) / 4
    assert chance_level("classification", "test_loss", d).level == pytest.approx(
        -(math.log(0.5) + 3 * math.log(0.25)) / 4
    )
    b = _splits([[1.0], [1.0], [0.0]], [[1.0], [0.0]], "binary", 1)
    assert chance_level("binary", "val_accuracy", b).level == pytest.approx(1.0)  # the val split: one example, a 1
    lm = _splits([[1, 1, 2, -100]], [[1, 2, -100, -100]], "language_model", 3)
    # unigram counts (0, 2, 1) + 1 -> (1, 3, 2) / 6: perplexity exp(-(log .5 + log 1/3) / 2) = sqrt(6)
    assert chance_level("language_model", "test_perplexity", lm).level == pytest.approx(math.sqrt(6))
    reg = _splits([[1.0], [3.0]], [[0.0], [4.0]], "regression", 1)
    assert chance_level("regression", "test_loss", reg).level == pytest.approx(4.0)  # mean 2: (4 + 4) / 2
    tags = _splits([[[3, 0], [3, 1], [1, 0], [-100, 0]]], [[[3, 0], [2, 0]]], "tagging", 4)
    assert chance_level("tagging", "test_accuracy", tags).level == pytest.approx(0.5)
    none = chance_level("vae", "test_fd_pixels", d)
    assert none.level is None and "no trivial predictor" in none.reason


def test_chance_levels_from_the_prepared_data(study, prepared):
    levels = ChanceLevels(prepared)
    got = levels([r for r in study["runs"] if r["tags"]["variant"] == "a"], "test_accuracy")
    y = study["data"].y_test
    majority = int(torch.bincount(study["data"].y_train).argmax())
    assert got.level == pytest.approx(float((y == majority).double().mean())) and got.n_examples == len(y)
    assert ChanceLevels(None)(study["runs"], "test_accuracy").reason.startswith("chance level unknown")


# --------------------------------------------------------------------------- the rest


def test_curves_of_unequal_length_average_the_runs_that_reached_each_epoch():
    mean, std, n = plots.per_epoch([[1.0, 2.0, 3.0], [3.0, 4.0]])
    assert mean.tolist() == [2.0, 3.0, 3.0]
    assert n.tolist() == [2, 2, 1]
    assert std[0] == pytest.approx(np.std([1, 3], ddof=1)) and std[2] == 0.0


def test_number_formatting():
    assert format_stat({"mean": 21450.0, "std": 0.0, "n": 3}) == "21,450"
    assert format_stat({"mean": 0.5, "std": 0.0, "n": 1}) == "0.5 (n=1)"
    assert format_stat({"mean": 19516.1, "std": 4355.5, "ci_low": 9616.9, "ci_high": 58649.2, "n": 2}) == (
        "19,520 ± 4,400 [9617, 58,650]"
    )


@pytest.mark.slow
def test_dvc_reads_the_declared_metrics_and_plots(study, tmp_path):
    """`dvc metrics show` and `dvc plots show` on the report stage exactly as dvc.yaml declares it."""
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    dvc = str(Path(sys.executable).with_name("dvc"))
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["report"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"report": stage}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"studies": ["demo"]}))
    shutil.copytree(study["out"], tmp_path / "reports" / "demo")
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)

    def run(*args: str) -> dict:
        res = subprocess.run([dvc, *args, "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    shown = run("metrics", "show")[""]["data"]["reports/demo/metrics.json"]["data"]
    assert (
        shown["best_test_accuracy"] == pytest.approx(0.91) and shown["claims_total"] == 1 and shown["checks_total"] == 1
    )
    assert shown["significant_pairs"] == 1
    plotted = run("plots", "show", "-o", str(tmp_path / "plots"))["data"]
    assert "reports/demo/curves/a.csv" in plotted
    assert any(k.endswith("figures/confusion_best.png") for k in plotted)
    spec = plotted["reports/demo/curves/a.csv"][0]["content"]
    assert [float(p["mean"]) for p in spec["data"]["values"]] == pytest.approx([0.72, 0.87, 0.92, 0.92, 0.92])
