"""`dvc repro` end to end on the tiny profile, in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import REPO, SERIAL_TRIALS

pytestmark = pytest.mark.slow


def _copy_repo(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file() and not f.startswith(("results/", "reports/", "data/prepared")):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def _dvc(cwd: Path, *args: str, session: bool = False, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """`dvc ARGS` in `cwd`; with `session`, under pipeline.ray_session, as `make repro` runs it; with `pythonpath`,
    the stages import the `pipeline` package found there (a copy's), not the installed one."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [str(Path(sys.executable).parent / "dvc"), *args]
    if session:
        cmd = [sys.executable, "-m", "pipeline.ray_session", "dvc", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


# Every test of this module works on one git + DVC copy of the project, reproduced once. The tests run in the order
# they are written: the no-op check first (it needs the repro and nothing after it), the rejected runs and the claim
# edit each put back what they changed, and the experiment run last (it leaves the workspace on another profile).
STUDIES = ["activations", "logistic"]


@pytest.fixture(scope="module")
def done_repo(tmp_path_factory):
    """A git + DVC copy of the project, tiny profile, two studies (activations; logistic, with sequential seeds),
    reproduced once by `dvc repro` under pipeline.ray_session, as `make repro` runs it (one Ray runtime for both
    study stages)."""
    repo = _copy_repo(tmp_path_factory.mktemp("done") / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["studies"] = STUDIES
    params["ray"]["max_concurrent_trials"] = SERIAL_TRIALS["ray.max_concurrent_trials"]  # see conftest
    # The profile test_pipeline_run_with_a_profile_is_a_dvc_experiment switches to: another profile than the one
    # the workspace is on, as cheap as tiny (that test is about the DVC experiment, not the default profile's cost).
    params["profiles"]["default"] = {"seeds": 1, "train": {"epochs": 2}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # logistic makes sequential looks on the tiny profile: 2 seeds per variant, then 4 for a claim still undecided
    spec = repo / "experiments" / "logistic.yaml"
    spec.write_text(spec.read_text().replace("profiles:\n", "profiles:\n  tiny:\n    seeds: {min: 2, max: 4}\n", 1))
    (repo / "dvc.lock").unlink(missing_ok=True)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "copy")
    first = _dvc(repo, "repro", session=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "reproduced")
    return repo


def test_a_sequential_study_trains_only_what_an_undecided_claim_needs(done_repo):
    """logistic on the tiny profile, `seeds: {min: 2, max: 4}`: every look in its one study stage; a variant that no
    claim names stays at 2 seeds, one gets 4 only where an undecided claim asked; no trial is trained twice; every
    claim says how it was settled, in analysis.json, summary.md and the sweep's parent run (tags the MLflow UI
    sorts by)."""
    repo = done_repo
    runs = json.loads((repo / "results" / "logistic" / "runs.json").read_text())
    sweep = json.loads((repo / "results" / "logistic" / "sweep.json").read_text())
    pairs = Counter((r["tags"]["variant"], int(r["tags"]["seed"])) for r in runs)
    assert max(pairs.values()) == 1 and sweep["trials_trained"] == len(runs)
    per_variant = Counter(v for v, _ in pairs)
    analysis = json.loads((repo / "reports" / "logistic" / "analysis.json").read_text())
    seq = analysis["sequential"]
    assert sweep["looks"] == len(seq["looks"]) and seq["looks"][-1]["seeds"] == dict(per_variant)
    named = {"0.03", "0.3"}  # the one claim's variants (experiments/logistic.yaml)
    assert all(n == 2 for v, n in per_variant.items() if v not in named), per_variant
    for before, after in zip(seq["looks"], seq["looks"][1:]):
        grew = {v for v, n in after["seeds"].items() if n > before["seeds"][v]}
        assert grew == set(before["more_seeds_for"]) and grew <= named
    summary = (repo / "reports" / "logistic" / "summary.md").read_text()
    tags = MlflowClient(sweep["tracking_uri"]).get_run(sweep["parent_run_id"]).data.tags
    for claim, rec in zip(analysis["claims"], seq["claims"]):
        assert "seed" in claim["settled"] and claim["settled"] in summary
        assert (rec["look"] is None) == (claim["verdict"] == "inconclusive")
        assert tags[f"claim.{claim['index']}.verdict"] == claim["verdict"]
        assert tags[f"claim.{claim['index']}.seeds"] == claim["settled"]


def test_dvc_repro_tiny_profile_then_noop(done_repo):
    repo = done_repo
    runs = json.loads((repo / "results" / "activations" / "runs.json").read_text())
    sweep = json.loads((repo / "results" / "activations" / "sweep.json").read_text())
    assert len(runs) == 5 and sweep["errors"] == 0  # five activations x one seed in the tiny profile
    assert {r["status"] for r in runs} == {"FINISHED"}
    assert sweep["tracking_uri"] == f"sqlite:///{(repo / 'mlflow.db').resolve()}"
    client = MlflowClient(sweep["tracking_uri"])
    statuses = [r.info.status for r in client.search_runs([sweep["experiment_id"]])]
    assert statuses.count("FINISHED") == 6 and "RUNNING" not in statuses  # 5 trials + the parent

    report = repo / "reports" / "activations"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["runs"] == 5 and metrics["runs_failed"] == 0 and "best_test_accuracy" in metrics
    analysis = json.loads((report / "analysis.json").read_text())
    variants = set(analysis["variants"])
    assert len(variants) == len(runs)  # one seed per variant in the tiny profile
    assert all(any(f"activation={a}" in v for v in variants) for a in ("sigmoid", "tanh", "relu", "maxout"))
    summary = (report / "summary.md").read_text()
    assert "**Question.**" in summary and "activation=relu" in summary
    assert {p.name for p in (report / "figures").iterdir()} >= {"curve_val_accuracy.png", "final_test_accuracy.png"}
    assert len(list((report / "curves").glob("*.csv"))) == len(runs)

    second = _dvc(repo, "repro")
    assert second.returncode == 0
    assert "Running stage" not in second.stdout, second.stdout
    status = _dvc(repo, "status")
    assert "up to date" in status.stdout


# --------------------------------------------------------------------------- a rejected run loses nothing


OUTPUTS = ("specs", "data/prepared", "results", "reports", "site")  # every stage output folder


def _snapshot(repo: Path) -> dict[str, bytes]:
    """Every file of the stages' outputs, by path."""
    out = {}
    for folder in OUTPUTS:
        for p in sorted((repo / folder).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(repo))] = p.read_bytes()
    return out


def _put_back(repo: Path, snapshot: dict[str, bytes], lock: bytes) -> None:
    """The stages' outputs and dvc.lock byte for byte as they were (`_snapshot`, dvc.lock read before): the
    reproduced state the module's later tests start from, without running the stages again."""
    for folder in OUTPUTS:
        for p in (repo / folder).rglob("*"):
            if p.is_file() and str(p.relative_to(repo)) not in snapshot:
                p.unlink()
    for name, data in snapshot.items():
        path = repo / name
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (repo / "dvc.lock").write_bytes(lock)
    _git(repo, "add", "dvc.lock")  # in git's index too: the project's core.autostage staged the edited one


@pytest.mark.parametrize(
    "how",
    [
        ["pipeline", "run", "logistic"],
        ["dvc", "repro"],
        ["dvc", "repro", "--single-item", "--force", "study@logistic"],  # skips the specs stage upstream
        ["dvc", "repro", "--single-item", "report@logistic"],
        ["dvc", "exp", "run", "-S", "profile=nonexistent"],
    ],
    ids=["pipeline-run", "dvc-repro", "single-item-study", "single-item-report", "exp-run-bad-profile"],
)
def test_a_rejected_run_keeps_every_output(done_repo, how):
    repo = done_repo
    before = _snapshot(repo)
    assert any(k.startswith("data/prepared/") for k in before) and any(k.startswith("results/") for k in before)
    spec = repo / "experiments" / "logistic.yaml"
    params = repo / "params.yaml"
    original_spec, original_params = spec.read_text(), params.read_text()
    if how[0] != "dvc" or how[1] != "exp":
        spec.write_text(original_spec.replace("name: linear", "name: linaer"))  # a typo in the study
    try:
        if how[0] == "pipeline":
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
            env.pop("MLFLOW_TRACKING_URI", None)
            proc = subprocess.run(
                [sys.executable, "-m", "pipeline", *how[1:]], cwd=repo, env=env, capture_output=True, text=True
            )
        else:
            proc = _dvc(repo, *how[1:])
        assert proc.returncode != 0, proc.stdout[-2000:]
        assert _snapshot(repo) == before, "an output changed or went missing"
        if how[0] == "pipeline":  # refused before DVC ran: one line naming the file and the key
            assert proc.returncode == 2 and "logistic.yaml: model.name" in proc.stderr, proc.stderr
            assert "Running stage" not in proc.stdout
        if how[1] == "exp":
            # DVC edits params.yaml before the stages run and leaves it so when they fail; `pipeline run
            # --profile` refuses an unknown profile before DVC is called (test_cli), which is the supported way.
            params.write_text(original_params)
    finally:
        spec.write_text(original_spec)
        params.write_text(original_params)


def test_a_claim_edit_rebuilds_the_report_but_not_the_sweep(done_repo):
    """On a study of a fixed number of seeds (activations): with sequential seeds (logistic here) the claims decide
    which seeds are trained, so they are part of its sweep."""
    repo = done_repo
    spec = repo / "experiments" / "activations.yaml"
    original = spec.read_text()
    outputs, lock = _snapshot(repo), (repo / "dvc.lock").read_bytes()
    try:
        spec.write_text(
            original.replace(
                "expect:\n",
                "expect:\n  - {claim: tanh has fewer weights, kind: extreme, "
                "a: 'mlp(hidden=[64,64,64,64,64],activation=tanh)', metric: n_params, "
                "direction: min}\n",
                1,
            )
        )
        proc = _dvc(repo, "repro")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Running stage 'report@activations'" in proc.stdout
        assert "Running stage 'study@activations'" not in proc.stdout and "Running stage 'prepare'" not in proc.stdout
        # dvc plots diff compares the workspace's learning curves with the last commit's: both revisions render.
        out = repo / "plots_diff"
        diff = _dvc(repo, "plots", "diff", "HEAD", "-o", str(out))
        assert diff.returncode == 0, diff.stderr[-2000:]
        page = (out / "index.html").read_text()
        assert "HEAD" in page and "workspace" in page and "curves" in page
    finally:
        spec.write_text(original)
        _put_back(repo, outputs, lock)  # the reproduced state from before the edit, for the tests after this one


def test_metrics_read_in_a_terminal(done_repo):
    """`dvc metrics show` / `dvc exp show`: a handful of flat numbers per study, not one column per variant."""
    proc = _dvc(done_repo, "metrics", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (ws,) = data.values()
    # one metrics file per study (this project reproduces two)
    assert sorted(ws["data"]) == sorted(f"reports/{s}/metrics.json" for s in STUDIES), ws["data"].keys()
    for metrics in ws["data"].values():
        flat = metrics["data"]
        assert len(flat) <= 12 and all(isinstance(v, int | float) for v in flat.values()), flat
        # inferential claims and arithmetic checks counted apart, with the family they were tested in
        assert {"runs", "claims_total", "claims_confirmed", "checks_total", "family_size"} <= set(flat), flat


def test_no_sentence_of_the_reports_outruns_their_tests(done_repo):
    """The reports `dvc repro` built: `python -m pipeline.report.gate reports` finds no sentence that ranks or compares
    variants without its study's family of tests behind it (the checker failing on old reports: tests/test_gate.py)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.report.gate", "reports"], cwd=done_repo, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(
        f"{len(STUDIES)} reports checked, 0 sentences rank or compare without their study's tests"
    )


def test_pipeline_run_with_a_profile_is_a_dvc_experiment(done_repo):
    """`pipeline run STUDY --profile P` runs `dvc exp run -S profile=P`: the run is listed by `dvc exp show` with
    its profile and its study's metrics. Last in this module: it leaves the workspace on that profile, as DVC does.
    The module's copy of the project makes that profile (default) as cheap as tiny: seeds 1, epochs 2."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "logistic", "--profile", "default"],
        cwd=done_repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shown = _dvc(done_repo, "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    experiments = [
        exp["revs"][0]["data"]
        for baseline in json.loads(shown.stdout)
        for exp in baseline.get("experiments") or []
        if exp.get("revs")
    ]
    profiles = [e["params"]["params.yaml"]["data"]["profile"] for e in experiments]
    assert "default" in profiles, shown.stdout[-3000:]
    (ours,) = [e for e in experiments if e["params"]["params.yaml"]["data"]["profile"] == "default"]
    metrics = ours["metrics"]["reports/logistic/metrics.json"]["data"]
    assert metrics["runs"] > 0 and metrics["runs_failed"] == 0
