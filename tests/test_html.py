"""site/index.html: content, MLflow links, the index stage, and the page as a real browser loads it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from pipeline import html
from pipeline.config import Params, Study, StudySpec
from pipeline.errors import ConfigError
from pipeline.report.build import build_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def fake_runs(values: dict[str, list[float]], epochs: int = 3) -> list[dict]:
    """runs.json rows as tracking.export_runs writes them, without a store."""
    runs = []
    for variant, finals in values.items():
        for seed, final in enumerate(finals):
            hist = {
                "epoch": [[e, e] for e in range(1, epochs + 1)],
                "val_accuracy": [[e, final - 0.1 * (epochs - e)] for e in range(1, epochs + 1)],
                "val_loss": [[e, 1.0 / e] for e in range(1, epochs + 1)],
            }
            runs.append(
                {
                    "run_id": f"{variant}{seed}" + "0" * 30,
                    "run_name": f"s-{variant}-{seed}",
                    "status": "FINISHED",
                    "tags": {"variant": variant, "seed": str(seed), "outcome": "completed"},
                    "params": {},
                    "final": {k: v[-1][1] for k, v in hist.items()},
                    "history": hist,
                }
            )
    return runs


def fake_study(name: str, question: str, metric: str = "val_accuracy", mode: str = "max", **spec) -> Study:
    """A validated study as `load_study` returns it, without a spec file: what `build_report` reads."""
    fields = {"question": question, "model": {}, "dataset": {}, "metric": metric, "mode": mode, **spec}
    return Study(name, Path(f"experiments/{name}.yaml"), StudySpec.model_validate(fields), Params())


def make_report(folder: Path, study: str, values: dict[str, list[float]], **sweep) -> Path:
    results = folder / "results" / study
    results.mkdir(parents=True)
    (results / "runs.json").write_text(json.dumps(fake_runs(values)))
    sweep = {"study": study, "experiment_id": "7", "parent_run_id": "p" * 32, "profile": "tiny", **sweep}
    (results / "sweep.json").write_text(json.dumps(sweep))
    out = folder / "reports" / study
    build_report(fake_study(study, f"Which {study} variant wins?"), results, out, log_to_mlflow=False)
    return out


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("html")
    return [
        make_report(tmp, "alpha", {"relu": [0.9, 0.92, 0.94], "tanh": [0.8, 0.82, 0.84]}),
        make_report(tmp, "beta", {"x<y": [0.5, 0.6], "z": [0.7, 0.72]}),  # a name HTML must escape
    ]


def test_page_has_every_study_question_answer_table_and_figure(reports):
    page = html.render_index(reports, "http://ui.example:5000")
    for r in reports:
        analysis = json.loads((r / "analysis.json").read_text())
        assert f'<section id="{analysis["study"]}">' in page
        assert analysis["question"] in page
        assert analysis["answer"].replace("<", "&lt;")[:80] in page
    assert page.count("<img ") == sum(len(list((r / "figures").glob("*.png"))) for r in reports)
    assert page.count('src="data:image/png;base64,') == page.count("<img ")
    assert "x&lt;y" in page and "x<y" not in page
    assert "<script" not in page and 'src="http' not in page  # self-contained
    assert '<td class="">0.92 ± 0.02 [0.8703, 0.9697]</td>' in page


def test_variants_link_to_their_mlflow_runs(reports):
    page = html.render_index(reports[:1], "http://ui.example:5000/")
    links = re.findall(r'href="(http://ui\.example:5000/#/experiments/7/runs/(\w+))"', page)
    run_ids = {rid for _, rid in links}
    assert {f"{v}{s}" + "0" * 30 for v in ("relu", "tanh") for s in range(3)} <= run_ids
    assert "p" * 32 in run_ids  # the sweep's parent run
    assert 'href="http://ui.example:5000/#/experiments/7"' in page


def test_mlflow_ui_base(monkeypatch):
    monkeypatch.delenv(html.MLFLOW_UI_ENV, raising=False)
    assert html.mlflow_ui_base() == "http://127.0.0.1:5000"
    assert html.mlflow_ui_base(tracking_uri="sqlite:////x/mlflow.db") == "http://127.0.0.1:5000"
    assert html.mlflow_ui_base(tracking_uri="https://mlflow.lab:8443/") == "https://mlflow.lab:8443"
    monkeypatch.setenv(html.MLFLOW_UI_ENV, "http://box:5001")
    assert html.mlflow_ui_base(tracking_uri="https://mlflow.lab:8443") == "http://box:5001"
    assert html.mlflow_ui_base("http://given") == "http://given"
    assert html.run_url("http://u", "3", "abc") == "http://u/#/experiments/3/runs/abc"


def test_missing_report_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="report missing"):
        html.render_index([tmp_path / "nope"])


def _stage_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("index_stage", REPO / "stages" / "index.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_index_stage_writes_the_page_and_fails_on_a_missing_report(reports, tmp_path, capsys):
    main = _stage_main()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"studies": ["alpha", "beta"]}))
    out = tmp_path / "site" / "index.html"
    assert main(["--params", str(params), "--reports", str(reports[0].parent), "--out", str(out)]) == 0
    assert out.read_text().count("<section") == 2
    params.write_text(yaml.safe_dump({"studies": ["alpha", "gamma"]}))
    assert main(["--params", str(params), "--reports", str(reports[0].parent), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gamma" in err[0] and "report missing" in err[0]


def test_index_stage_runs_after_every_report_stage():
    """The index stage depends on the reports/ folder, so DVC orders it after every report@ stage."""
    dag = subprocess.run(
        [sys.executable, "-m", "dvc", "dag", "--dot", "index"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    studies = yaml.safe_load((REPO / "params.yaml").read_text())["studies"]
    missing = [s for s in studies if f'"report@{s}" -> "index"' not in dag]
    assert not missing, dag
    assert yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["index"]["outs"] == [
        {"site/index.html": {"persist": True}}
    ]


# --------------------------------------------------------------------------- in a real browser


def browser_check(page: Path) -> tuple[list[int], list[dict]]:
    """Open the page in headless Chromium: each image's naturalWidth, and the console's warnings/errors."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(page.resolve().as_uri())  # returns after the load event: every image has settled
        widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
        logs = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return widths, logs


def _browser_missing() -> str | None:
    import importlib.util

    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium not installed (pip install selenium)"
    return None


browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


@pytest.mark.slow
@browser
def test_page_loads_every_figure_without_console_errors(reports, tmp_path):
    page = tmp_path / "index.html"
    page.write_text(html.render_index(reports))
    widths, logs = browser_check(page)
    n_png = sum(len(list((r / "figures").glob("*.png"))) for r in reports)
    assert len(widths) == n_png and n_png >= 6
    assert all(w > 0 for w in widths), widths
    assert logs == []


@pytest.mark.slow
@browser
def test_browser_check_catches_a_broken_figure_and_a_console_error(tmp_path):
    """The check above can fail: a corrupt image and a script error are both seen."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="data:image/png;base64,iVBORw0KGgoAAAA="><script>console.error("boom")</script></body></html>'
    )
    widths, logs = browser_check(page)
    assert widths == [0]
    assert any("boom" in e["message"] for e in logs)
