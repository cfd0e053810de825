"""The MLflow UI as its users open it, in real headless Chromium against a real `mlflow ui`: a study's experiment,
opened by the links the pipeline writes, shows its runs (not MLflow 3's GenAI overview) with the variant names, and
a trial's page shows its dataset input and its logged model.

MLflow 3.17's UI picks the GenAI or the model-training view from its own switch (the `workflowType` URL parameter,
else the browser's last choice, else GenAI), whatever the experiment's `mlflow.experimentKind` tag says; the
pipeline sets that tag (MLflow's convention) and its links carry `workflowType=machine_learning`."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import SERIAL_TRIALS, TINY_SPEC, mlflow_process, write_params, write_spec
from tests.test_html import CHROMIUM, browser_missing

pytestmark = [pytest.mark.slow, pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]
BIN = Path(sys.executable).parent
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def swept(tmp_path_factory, prepared_dir, ray_local):
    """A finished tiny sweep (relu, tanh) in a SQLite store, through the pipeline's own run_study."""
    from pipeline.config import load_params, load_study
    from pipeline.sweep import run_study

    folder = tmp_path_factory.mktemp("ui")
    params = write_params(folder, **SERIAL_TRIALS)
    old = os.environ.get("PIPELINE_ROOT")
    os.environ["PIPELINE_ROOT"] = str(folder)
    try:
        study = load_study(write_spec(folder, "ui_study", TINY_SPEC), load_params(params), str(params))
        summary = run_study(study, prepared_dir, folder / "results")
    finally:
        os.environ.pop("PIPELINE_ROOT") if old is None else os.environ.__setitem__("PIPELINE_ROOT", old)
    assert summary["errors"] == 0
    return folder, summary


@pytest.fixture(scope="module")
def ui(swept):
    """`mlflow ui` on 127.0.0.1 over the sweep's store, stopped at the end."""
    folder, summary = swept
    with mlflow_process(
        ["ui", "--backend-store-uri", summary["tracking_uri"]], env=dict(os.environ), cwd=folder
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1400,900",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for_text(driver, needles: list[str], timeout: float = 60) -> str:
    """The page's visible text once every needle is in it (the UI renders after its API calls return)."""
    deadline = time.time() + timeout
    text = ""
    while time.time() < deadline:
        text = driver.execute_script("return document.body ? document.body.innerText : ''")
        if all(n in text for n in needles):
            return text
        time.sleep(0.5)
    raise AssertionError(f"not all of {needles} on {driver.current_url}; the page says:\n{text[:3000]}")


def test_experiment_opens_on_its_runs_with_variant_names(ui, swept, browser):
    _, summary = swept
    from mlflow import MlflowClient

    from pipeline.html import experiment_url

    exp = MlflowClient(summary["tracking_uri"]).get_experiment(summary["experiment_id"])
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    from selenium.webdriver.common.by import By

    browser.get(experiment_url(ui, summary["experiment_id"]))
    _wait_for_text(browser, ["ui_study-sweep-", "Run Name"])  # the runs table, its sweep's parent run on top
    # The parent groups the trials' runs, collapsed: open it with the button in its name cell.
    link = browser.find_element(By.PARTIAL_LINK_TEXT, "ui_study-sweep-")
    cell = link.find_element(By.XPATH, "./ancestor::*[contains(@class, 'ag-cell-value')][1]")
    cell.find_element(By.TAG_NAME, "button").click()
    # Run names carry the variant: ui_study-relu-s0, ui_study-tanh-s0. On the GenAI overview no run name is shown.
    text = _wait_for_text(browser, ["ui_study-relu-s0", "ui_study-tanh-s0"])
    assert "Model training" in text


def test_a_trial_page_shows_its_dataset_and_logged_model(ui, swept, browser):
    from mlflow import MlflowClient

    _, summary = swept
    client = MlflowClient(summary["tracking_uri"])
    (run,) = client.search_runs([summary["experiment_id"]], filter_string="tags.variant = 'relu'")
    assert run.data.tags["best_model_id"]
    from pipeline.html import run_url

    browser.get(run_url(ui, summary["experiment_id"], run.info.run_id))
    # The dataset input (name and digest, a prefix of the prepared file's sha256) and the logged model's name.
    digest = run.data.tags["data_sha256"][:8]
    text = _wait_for_text(browser, ["digits", digest, "model"])
    assert "ui_study-relu-s0" in text
    # The logged model loads as the model it is, with the best weights.
    import mlflow.pytorch

    model = mlflow.pytorch.load_model(f"models:/{run.data.tags['best_model_id']}")
    assert sum(p.numel() for p in model.parameters()) == int(run.data.metrics["n_params"])


def test_the_experiments_models_tab_lists_one_model_per_trial_by_name(ui, swept, browser):
    """The Models tab of the study's experiment (the report's "its logged models" link) lists each trial's model by
    its study, variant and seed, logged from the pipeline's program rather than Ray's worker script."""
    from mlflow import MlflowClient

    from pipeline.html import models_url

    _, summary = swept
    runs = MlflowClient(summary["tracking_uri"]).search_runs([summary["experiment_id"]], "tags.variant != ''")
    assert sorted(r.info.run_name for r in runs) == ["ui_study-relu-s0", "ui_study-tanh-s0"]
    browser.get(models_url(ui, summary["experiment_id"]))
    text = _wait_for_text(browser, ["ui_study-relu-s0", "ui_study-tanh-s0"])
    assert "default_worker" not in text
    assert "No models" not in text
