"""The report stage on a synthetic MLflow store whose runs we wrote ourselves.

Expected numbers are computed by hand from the values put in:
    a: 0.90, 0.92, 0.94  -> mean 0.92, sample std 0.02, 95% CI 0.92 ± t(0.975, 2) * 0.02 / sqrt(3)
                            = 0.92 ± 4.302653 * 0.011547 = [0.870317, 0.969683]
    b: 0.80, 0.82, 0.84 (+ one diverged run) -> Welch vs a: t = 0.1 / sqrt(2 * 0.02² / 3) = 6.1237,
                            df = 4, two-sided p = 0.003602
    c: 0.91 (one seed)   -> ranked between a and b, not testable
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_html import fake_study

from pipeline import tracking
from pipeline.report.analysis import analyze
from pipeline.report.build import build_report
from pipeline.report.confusion import confusion
from pipeline.report.figures import per_epoch
from pipeline.report.markdown import format_stat

VALUES = {"a": [0.90, 0.92, 0.94], "b": [0.80, 0.82, 0.84], "c": [0.91]}
N_PARAMS = {"a": 1000, "b": 2000, "c": 1000}
EPOCH_SECONDS = {"a": 1.0, "b": 2.0, "c": 1.0}
EPOCHS = 3
MODEL = {"name": "mlp", "init": "default", "options": {"hidden": [8], "activation": "relu", "dropout": 0.0}}
DATASET = {"name": "synthetic", "options": {"n_samples": 200, "n_features": 6, "n_classes": 3, "n_informative": 3}}


def _log(c, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()], synchronous=True)


def _child(uri: str, exp: str, parent: str, variant: str, seed: int, final: float, outcome: str = "completed") -> str:
    c = tracking.client(uri)
    run_id = c.create_run(
        exp,
        run_name=f"demo-{variant}-s{seed}",
        tags={"mlflow.parentRunId": parent, "variant": variant, "seed": str(seed), "outcome": outcome},
    ).info.run_id
    tracking.log_params(uri, run_id, {"model": MODEL, "dataset": DATASET, "seed": seed})
    _log(c, run_id, {"n_params": N_PARAMS[variant], "flops_per_sample": 500}, step=0)
    for epoch in range(1, EPOCHS + 1):
        # the curve ends at the run's final value; earlier epochs are lower by a known step
        value = final - 0.1 * (EPOCHS - epoch) if outcome == "completed" else float("nan")
        _log(
            c,
            run_id,
            {"epoch": epoch, "val_accuracy": value, "val_loss": 1.0 / epoch, "epoch_seconds": EPOCH_SECONDS[variant]},
            step=epoch,
        )
    _log(c, run_id, {"test_accuracy": final - 0.01}, step=EPOCHS)
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
    ids = {}
    for variant, values in VALUES.items():
        for seed, v in enumerate(values):
            ids[(variant, seed)] = _child(uri, exp, parent, variant, seed, v)
    ids[("b", 3)] = _child(uri, exp, parent, "b", 3, 0.0, outcome="diverged")
    c.set_terminated(parent, "FINISHED")

    # the best run (a, seed 2) gets a real model: random weights, so the expected matrix is computed below
    best = ids[("a", 2)]
    from pipeline.data import load_prepared
    from pipeline.models import build_model

    data = load_prepared(prepared, DATASET["name"], DATASET["options"])
    torch.manual_seed(0)
    model = build_model(MODEL["name"], MODEL["options"], data.info)
    art = tmp / "art"
    art.mkdir()
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
    built = build_report(fake_study("demo", "Which variant is best?"), results, out, data_dir=prepared)
    with torch.no_grad():
        pred = model(data.x_test).argmax(dim=-1).numpy()
    return {
        "uri": uri,
        "parent": parent,
        "ids": ids,
        "out": out,
        "results": results,
        "built": built,
        "runs": runs,
        "truth": data.y_test.numpy(),
        "pred": pred,
    }


def test_table_and_answer_match_the_runs(study):
    metrics = json.loads((study["out"] / "metrics.json").read_text())["variants"]
    a, b, c = metrics["a"], metrics["b"], metrics["c"]
    assert (a["rank"], c["rank"], b["rank"]) == (1, 2, 3)
    assert a["val_accuracy"]["mean"] == pytest.approx(0.92)
    assert a["val_accuracy"]["std"] == pytest.approx(0.02)
    assert a["val_accuracy"]["ci_low"] == pytest.approx(0.870317, abs=1e-6)
    assert a["val_accuracy"]["ci_high"] == pytest.approx(0.969683, abs=1e-6)
    assert b["p_vs_best"] == pytest.approx(0.003602, abs=1e-6)
    assert "p_vs_best" not in c and c["n"] == 1
    assert (b["runs"], b["n"], b["diverged"]) == (4, 3, 1)
    assert a["test_accuracy"] == pytest.approx(0.91)
    # DVC metrics must be numbers only
    flat = [v for row in metrics.values() for v in row.values()]
    assert all(isinstance(v, int | float | dict) for v in flat)

    summary = (study["out"] / "summary.md").read_text()
    assert "| 1 | a | 3/3 | 0.92 ± 0.02 [0.8703, 0.9697] |" in summary
    assert "| 3 | b | 3/4 | 0.82 ± 0.02 [0.7703, 0.8697] |" in summary
    assert "| 0.0036 * | 1 |" in summary
    answer = study["built"]["analysis"]["answer"]
    assert answer.startswith("a has the highest val_accuracy (0.920 ± 0.020, n=3); it is significantly better than b")
    assert "(p=0.0036)" in answer and "c has a single seed" in answer
    assert "1 run(s) diverged" in answer and "b: 1/4" in answer


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
        "final_val_accuracy.png",
        "val_accuracy_vs_n_params.png",  # 1000 vs 2000
        "val_accuracy_vs_train_seconds.png",  # 3 s vs 6 s
        "confusion_best.png",
    } <= names
    assert "val_accuracy_vs_flops_per_sample.png" not in names  # the same for every variant
    for name in names:
        img = matplotlib.image.imread(study["out"] / "figures" / name)
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img.std() > 0.01  # not a blank canvas


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


def test_report_builds_without_a_store(study, tmp_path, caplog, prepared):
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs.json").write_text((study["results"] / "runs.json").read_text())
    gone = tmp_path / "nowhere" / "mlflow.db"
    sweep = {"study": "demo", "tracking_uri": f"sqlite:///{gone}", "experiment_id": "1", "parent_run_id": "x"}
    (results / "sweep.json").write_text(json.dumps(sweep))
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        built = build_report(fake_study("demo", "Q"), results, tmp_path / "out", data_dir=prepared)
    assert "report not logged to MLflow: no MLflow database" in caplog.text
    assert built["analysis"]["confusion"] == {"skipped": f"no MLflow database at {gone}"}
    assert not gone.parent.exists()  # no empty store was created on the way
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["variants"]["a"]["rank"] == 1


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


def test_permutation_test_is_exact_for_three_seeds(study):
    # 3 vs 3 seeds: 20 ways to split the 6 values; only the observed split and its mirror are as extreme
    analysis = analyze(study["runs"], "val_accuracy", "max", test="permutation")
    assert analysis["variants"]["b"]["p_vs_best"] == pytest.approx(2 / 20)
    assert not analysis["variants"]["b"]["significant_vs_best"]
    assert "not distinguishable from b (p=0.1)" in analysis["answer"]


def test_curves_of_unequal_length_average_the_runs_that_reached_each_epoch():
    mean, std, n = per_epoch([[1.0, 2.0, 3.0], [3.0, 4.0]])
    assert mean.tolist() == [2.0, 3.0, 3.0]
    assert n.tolist() == [2, 2, 1]
    assert std[0] == pytest.approx(np.std([1, 3], ddof=1)) and std[2] == 0.0


def test_number_formatting():
    assert format_stat({"mean": 21450.0, "std": 0.0, "n": 3}) == "21,450"
    assert format_stat({"mean": 0.5, "std": 0.0, "n": 1}) == "0.5 (n=1)"
    assert format_stat({"mean": 19516.1, "std": 4355.5, "ci_low": -19616.9, "ci_high": 58649.2, "n": 2}) == (
        "19,520 ± 4,400 [-19,620, 58,650]"
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

    shown = run("metrics", "show")[""]["data"]["reports/demo/metrics.json"]["data"]["variants"]
    assert shown["a"]["rank"] == 1 and shown["a"]["val_accuracy"]["mean"] == pytest.approx(0.92)
    assert shown["b"]["p_vs_best"] == pytest.approx(0.003602, abs=1e-6)
    plotted = run("plots", "show", "-o", str(tmp_path / "plots"))["data"]
    assert "reports/demo/curves/a.csv" in plotted
    assert any(k.endswith("figures/confusion_best.png") for k in plotted)
    spec = plotted["reports/demo/curves/a.csv"][0]["content"]
    assert [float(p["mean"]) for p in spec["data"]["values"]] == pytest.approx([0.72, 0.82, 0.92])


def test_target_never_reached_is_said_plainly():
    from test_html import fake_runs

    runs = fake_runs({"relu": [0.5, 0.6], "tanh": [0.4, 0.45]})
    for r in runs:
        r["tags"]["target_reached"] = "false"
        r["final"]["epochs_to_target"] = 4.0
    analysis = analyze(runs, "val_accuracy", "max", {"metric": "val_accuracy", "value": 0.9})
    assert "No run reached val_accuracy ≥ 0.9 within its epochs." in analysis["answer"]
    assert "lowest epochs_to_target" not in analysis["answer"]
    runs[0]["tags"]["target_reached"] = "true"
    runs[0]["final"]["epochs_to_target"] = 2.0
    analysis = analyze(runs, "val_accuracy", "max", {"metric": "val_accuracy", "value": 0.9})
    assert "To reach val_accuracy ≥ 0.9: relu has the lowest epochs_to_target (3.0 ± 1.4, n=2)" in analysis["answer"]
