"""site/index.html: content, MLflow links, the index stage, and the page as a real browser loads it."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html import escape
from pathlib import Path

import pytest
import yaml

from pipeline import html
from pipeline.config import Params, Study, StudySpec
from pipeline.errors import ConfigError
from pipeline.report.build import build_report
from pipeline.report.markdown import format_stat

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


def make_report(folder: Path, study: str, values: dict[str, list[float]], expect: list | None = None, **sweep) -> Path:
    results = folder / "results" / study
    results.mkdir(parents=True)
    (results / "runs.json").write_text(json.dumps(fake_runs(values)))
    sweep = {"study": study, "experiment_id": "7", "parent_run_id": "p" * 32, "profile": "tiny", **sweep}
    (results / "sweep.json").write_text(json.dumps(sweep))
    out = folder / "reports" / study
    spec = fake_study(study, f"Which {study} variant wins?", expect=expect or [])
    build_report(spec, results, out, log_to_mlflow=False)
    return out


ALPHA_CLAIMS = [
    {"claim": "relu beats tanh", "kind": "better", "a": "relu", "b": "tanh"},
    {"claim": "relu has the highest accuracy", "kind": "extreme", "a": "relu", "direction": "max"},
    {"claim": "tanh is twice relu", "kind": "ratio", "a": "tanh", "b": "relu", "value": 2.0},
]


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("html")
    return [
        make_report(tmp, "alpha", {"relu": [0.9, 0.92, 0.94], "tanh": [0.8, 0.82, 0.84]}, ALPHA_CLAIMS),
        make_report(tmp, "beta", {"x<y": [0.5, 0.6], "z": [0.7, 0.72]}),  # a name HTML must escape
    ]


def test_page_has_every_study_question_answer_table_and_figure(reports):
    page = html.render_index(reports, "http://ui.example:5000")
    for r in reports:
        analysis = json.loads((r / "analysis.json").read_text())
        assert f'<section id="{analysis["study"]}">' in page
        assert analysis["question"] in page
        assert escape(analysis["answer"])[:80] in page
    assert page.count("<img ") == sum(len(list((r / "figures").glob("*.png"))) for r in reports)
    assert page.count('src="data:image/png;base64,') == page.count("<img ")
    assert "x&lt;y" in page and "x<y" not in page
    assert "<script" not in page and 'src="http' not in page  # self-contained
    relu = json.loads((reports[0] / "analysis.json").read_text())["variants"]["relu"]["val_accuracy"]
    assert 0 < relu["ci_low"] < relu["mean"] < relu["ci_high"] < 1  # the logit-scale interval, in range
    assert f'<td class="">{format_stat(relu)}</td>' in page


def test_claims_table_over_all_studies_at_the_top(reports):
    page = html.render_index(reports)
    top = page.index('<section id="all-claims">')
    assert top < page.index("<nav>") < page.index('<section id="alpha">')
    table = page[top : page.index("</section>", top)]
    assert "<th>study</th><th>claim</th><th>verdict</th><th>seeds</th><th>reason</th>" in table
    claims, checks = table.split("<h3>Arithmetic checks</h3>")
    assert claims.count("<tr><td>") == 2  # alpha's two inferential claims; beta has none
    assert checks.count("<tr><td>") == 1 and "<th>study</th><th>check</th>" in checks  # the ratio, counted apart
    assert '<a href="#alpha">alpha</a></td><td class="text">tanh is twice relu</td>' in checks
    assert '<td class="verdict contradicted">contradicted</td>' in checks  # 0.82 / 0.92 is not 2
    assert "2 inferential claims" in claims and "0 contradicted" in claims
    assert "1 arithmetic checks (not inference): 0 hold" in claims
    for verdict, colour in (("confirmed", "#e3f4e1"), ("contradicted", "#fbe3e1"), ("inconclusive", "#f1f1f1")):
        assert f"td.{verdict} {{ background: {colour};" in page
    assert "No study declares claims" in html.render_index(reports[1:])


def test_variants_link_to_their_mlflow_runs(reports):
    page = html.render_index(reports[:1], "http://ui.example:5000/")
    links = re.findall(r'href="(http://ui\.example:5000/#/experiments/7/runs/(\w+))(?:\?[^"]*)?"', page)
    run_ids = {rid for _, rid in links}
    assert {f"{v}{s}" + "0" * 30 for v in ("relu", "tanh") for s in range(3)} <= run_ids
    assert "p" * 32 in run_ids  # the sweep's parent run
    assert 'href="http://ui.example:5000/#/experiments/7' in page


def test_mlflow_ui_base(monkeypatch):
    monkeypatch.delenv(html.MLFLOW_UI_ENV, raising=False)
    assert html.mlflow_ui_base() == "http://127.0.0.1:5000"
    assert html.mlflow_ui_base(tracking_uri="sqlite:////x/mlflow.db") == "http://127.0.0.1:5000"
    assert html.mlflow_ui_base(tracking_uri="https://mlflow.lab:8443/") == "https://mlflow.lab:8443"
    monkeypatch.setenv(html.MLFLOW_UI_ENV, "http://box:5001")
    assert html.mlflow_ui_base(tracking_uri="https://mlflow.lab:8443") == "http://box:5001"
    assert html.mlflow_ui_base("http://given") == "http://given"
    assert html.run_url("http://u", "3", "abc").startswith("http://u/#/experiments/3/runs/abc")


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
    assert out.read_text().count("<section") == 3  # the claims table and the two studies
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


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 900):
    """A headless Chromium (selenium) with a window of width x height, its console log kept."""
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
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.set_window_size(width, height)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def browser_check(page: Path) -> tuple[list[int], list[dict]]:
    """Open the page in headless Chromium: each image's naturalWidth, and the console's warnings/errors."""
    with chromium() as driver:
        driver.get(page.resolve().as_uri())  # returns after the load event: every image has settled
        widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
        logs = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    return widths, logs


# How wide the page is against the window, and how far the widest wrapped table scrolls inside its box.
WIDTH_SCRIPT = """
const scrolls = Array.from(document.querySelectorAll('.scroll'));
return {
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
  // outside the scrolling boxes (inside one, content is meant to reach past the window and scroll)
  widest: Math.max(0, ...Array.from(document.body.querySelectorAll('*')).filter(e => !e.closest('.scroll'))
                          .map(e => e.getBoundingClientRect().right)),
  scrolling: scrolls.filter(e => e.scrollWidth > e.clientWidth).length,
};
"""


def page_width(page: Path, width: int = 1400, height: int = 900) -> dict:
    with chromium(width, height) as driver:
        driver.get(page.resolve().as_uri())
        return driver.execute_script(WIDTH_SCRIPT)


def browser_missing() -> str | None:
    import importlib.util

    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium not installed (pip install selenium)"
    return None


browser = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


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


@pytest.mark.slow
@browser
def test_page_fits_a_laptop_window(tmp_path):
    """At 1400x900 no element is wider than the window: wide tables scroll inside their box."""
    # variant names as long as a grid over several keys makes them, and long claims: the table is wider than the page
    names = [
        f"hidden=[{w},{w},{w},{w},{w},{w}],lr={lr},optimizer=adamw,schedule=cosine,weight_decay=0.0001,warmup_epochs=5"
        for w in (256, 1024)
        for lr in (0.1, 0.01, 0.001)
    ]
    values = {name: [0.9 - 0.01 * i, 0.91 - 0.01 * i] for i, name in enumerate(names)}
    claims = [
        {"claim": "the widest network beats the narrowest " * 4, "kind": "better", "a": names[0], "b": names[-1]},
        {"claim": "no gain", "kind": "no_gain", "a": names[1], "b": names[2], "margin": 0.01},
    ]
    wide = make_report(tmp_path, "wide", values, claims)
    page = tmp_path / "index.html"
    page.write_text(html.render_index([wide]))
    got = page_width(page)
    assert got["scrollWidth"] <= got["innerWidth"] == 1400, got
    assert got["widest"] <= got["innerWidth"], got
    assert got["scrolling"] >= 1, got  # the variants table is wider than its box, and scrolls inside it

    # the check can fail: the same rows in a table without its scrolling box widen the page
    table = re.search(r'<div class="scroll"><table>.*?</table></div>', page.read_text(), re.S).group(0)
    bare = tmp_path / "bare.html"
    bare.write_text(page.read_text().replace(table, table.replace('<div class="scroll">', "<div>") * 3))
    got = page_width(bare)
    assert got["scrollWidth"] > got["innerWidth"], got
