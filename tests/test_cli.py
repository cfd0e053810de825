"""The `pipeline` command line and the sweep progress lines."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from test_html import fake_runs

from pipeline.cli import main
from pipeline.progress import TrialProgress

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "question": "Does a tiny MLP prefer relu?",
    "model": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "dataset": {"name": "digits"},
    "search": {"space": {"model.activation": ["relu", "tanh"]}},
    "seeds": 3,
}


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder: the real dvc.yaml, params.yaml naming one study `demo`, and its results."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["studies"] = ["demo"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "demo.yaml").write_text(yaml.safe_dump(SPEC))
    results = tmp_path / "results" / "demo"
    results.mkdir(parents=True)
    (results / "runs.json").write_text(json.dumps(fake_runs({"relu": [0.9, 0.92, 0.94], "tanh": [0.8, 0.82, 0.84]})))
    sweep = {"study": "demo", "profile": "default", "experiment_id": "1", "parent_run_id": "p" * 32}
    (results / "sweep.json").write_text(json.dumps(sweep))
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse: --help and usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_console_script_help():
    exe = Path(sys.executable).with_name("pipeline")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline"]
    res = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for command in ("studies", "run", "report", "show"):
        assert command in res.stdout


@pytest.mark.parametrize("command", ["studies", "run", "report", "show"])
def test_every_command_has_help(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: pipeline {command}")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["run"], "the following arguments are required: study"),
        (["show", "demo", "--colour"], "unrecognized arguments: --colour"),
        (["show", "nosuch"], "unknown study 'nosuch'; params.yaml studies: demo"),
        (["run", "demo", "--profile", "huge"], "unknown profile 'huge'; allowed: default, tiny, full"),
        (["show", "demo"], "report missing"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, project, argv, message):
    code, out, err = run(capsys, "--root", str(project), *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err


def test_no_project_here(capsys, tmp_path):
    code, _, err = run(capsys, "--root", str(tmp_path), "studies")
    assert code == 2 and "no params.yaml here" in err


def test_run_goes_through_dvc(capsys, project):
    code, out, _ = run(capsys, "--root", str(project), "run", "demo", "--dry-run")
    assert code == 0 and out.strip() == "$ dvc repro report@demo"
    code, out, _ = run(capsys, "--root", str(project), "run", "demo", "--profile", "default", "--dry-run")
    assert out.strip() == "$ dvc repro report@demo"  # the profile params.yaml already has
    code, out, _ = run(capsys, "--root", str(project), "run", "demo", "--profile", "tiny", "--dry-run")
    assert code == 0 and out.strip() == "$ dvc exp run -S profile=tiny report@demo"
    code, out, _ = run(capsys, "--root", str(project), "report", "demo", "--dry-run")
    assert out.strip() == "$ dvc repro --single-item report@demo"
    code, out, _ = run(capsys, "--root", str(project), "run", "demo", "--retrain", "--dry-run")
    assert code == 0 and out.strip() == "$ PIPELINE_RETRAIN=1 dvc repro --force report@demo"
    code, out, _ = run(capsys, "--root", str(project), "run", "demo", "--profile", "tiny", "--retrain", "--dry-run")
    assert out.strip() == "$ PIPELINE_RETRAIN=1 dvc exp run --force -S profile=tiny report@demo"


@pytest.mark.parametrize(
    "argv", [["run", "demo", "--dry-run"], ["report", "demo", "--dry-run"], ["report", "demo", "--out", "scratch"]]
)
def test_unknown_report_section_fails_before_dvc_runs(capsys, project, argv):
    """A bad `report:` name is one line naming the file and `report.<i>`, before DVC could delete an output."""
    (project / "experiments" / "demo.yaml").write_text(yaml.safe_dump({**SPEC, "report": ["nosuch"]}))
    argv = [str(project / a) if a == "scratch" else a for a in argv]
    code, out, err = run(capsys, "--root", str(project), *argv)
    assert code == 2 and out == ""  # no DVC command printed, none run
    assert len(err.strip().splitlines()) == 1, err
    assert "experiments/demo.yaml: report.0: unknown report section 'nosuch'; allowed: " in err
    assert not (project / "scratch").exists()


def test_report_studies_and_show(capsys, project, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run(capsys, "--root", str(project), "studies", "--no-dvc")
    assert code == 0
    header, _, row = out.splitlines()[:3]
    assert header.split() == ["study", "results", "report", "dvc", "question"]
    assert row.split()[:6] == ["demo", "6", "runs", "(default)", "none", "?"]

    claim = {"claim": "relu beats tanh", "kind": "better", "a": "relu", "b": "tanh"}
    (project / "experiments" / "demo.yaml").write_text(yaml.safe_dump({**SPEC, "expect": [claim]}))
    code, out, _ = run(capsys, "--root", str(project), "report", "demo", "--out", str(project / "reports" / "demo"))
    # significant, but the runs have not converged: the answer withholds the ranking (the gate)
    assert code == 0 and "relu scores above tanh (p=0.0018), but relu and tanh have not converged" in out
    assert "ranks first" not in out
    assert "demo" in run(capsys, "--root", str(project), "studies", "--no-dvc")[1].splitlines()[2]

    code, out, _ = run(capsys, "--root", str(project), "show", "demo")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "demo: Does a tiny MLP prefer relu?"
    start = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[start : start + 4]]
    assert cells[0] == ["rank", "variant", "n", "val_accuracy", "p vs 1st", "checks"]
    # the fake runs' curves still rise at their last epoch: significant, but no finding
    assert cells[2] == ["1", "relu", "3/3", "0.92 ± 0.02 [0.849, 0.9583]", "–", "not converged"]
    assert cells[3] == [
        "2",
        "tanh",
        "3/3",
        "0.82 ± 0.02 [0.7641, 0.8645]",
        "0.0018 *",
        "not converged",
    ]  # one-sided: the claim
    # first the verdicts, one line each; then the answer's first sentences; then the table; then the reasons
    verdict = lines.index("  inconclusive  relu beats tanh")
    parts = json.loads((project / "reports" / "demo" / "analysis.json").read_text())["answer_parts"]
    headline = lines.index(textwrap.wrap(" ".join(parts["headline"]), 100)[0])
    assert 0 < verdict < headline < start
    claims = lines.index("claims:")
    assert claims > start + 3 and lines[claims + 1] == "[inconclusive] relu beats tanh"
    assert "relu and tanh have not converged" in " ".join(x.strip() for x in lines[claims + 2 :])
    assert "\x1b[" not in out
    # the headline above the table, the detail below it, each once
    flat = " ".join(out.split())
    for part in ("headline", "detail"):
        assert flat.count(" ".join(" ".join(parts[part]).split()[-8:])) == 1, part


def built_report(capsys, project: Path, claims: list[dict]) -> dict:
    (project / "experiments" / "demo.yaml").write_text(yaml.safe_dump({**SPEC, "expect": claims}))
    code, _, err = run(capsys, "--root", str(project), "report", "demo", "--out", str(project / "reports" / "demo"))
    assert code == 0, err
    return json.loads((project / "reports" / "demo" / "analysis.json").read_text())


def test_show_puts_the_verdicts_first_and_checks_apart(capsys, project, monkeypatch):
    """Arithmetic checks (analysis.json's `checks`) are counted apart from the claims at the top and listed apart
    below; a long claim is one line of the width."""
    monkeypatch.setenv("COLUMNS", "80")
    long_claim = "relu beats tanh " + "on every digit of the held-out split " * 5
    a = built_report(capsys, project, [{"claim": long_claim, "kind": "better", "a": "relu", "b": "tanh"}])
    a["checks"] = [{"claim": "relu has 2x the units", "verdict": "confirmed", "reason": "8 / 4 = 2"}]
    a["checks"].append({"claim": "tanh has as many weights", "verdict": "confirmed", "reason": "8 / 8 = 1"})
    (project / "reports" / "demo" / "analysis.json").write_text(json.dumps(a))

    code, out, _ = run(capsys, "--root", str(project), "show", "demo")
    assert code == 0
    lines = out.splitlines()
    top = lines[: next(i for i, line in enumerate(lines) if line.startswith("rank"))]
    verdicts = [line for line in top if line.startswith("  ")]
    assert len(verdicts) == 2  # one line for the one claim, one counting the checks
    assert verdicts[0].startswith("  inconclusive  relu beats tanh on every digit") and verdicts[0].endswith("…")
    assert len(verdicts[0]) <= 80
    assert verdicts[1] == "  + 2 arithmetic checks (not inference), 2 hold"
    checks = lines.index("checks (arithmetic identities, apart from the claims):")
    assert lines[checks + 1 :] == [
        "[confirmed] relu has 2x the units",
        "    8 / 4 = 2",
        "[confirmed] tanh has as many weights",
        "    8 / 8 = 1",
    ]
    claims = lines.index("claims:")
    assert claims < checks and "relu has 2x the units" not in "\n".join(lines[claims:checks])
    assert all(len(line) <= 80 for line in lines if not line.startswith(("rank", "----", "1 ", "2 ")))


def test_studies_fit_the_terminal(capsys, tmp_path, monkeypatch):
    """The repo's real questions (up to hundreds of characters) are shortened to the width (120 at most, the
    terminal's when narrower, 80 at least); every other column stays whole."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    studies = yaml.safe_load((REPO / "params.yaml").read_text())["studies"]
    questions = {s: yaml.safe_load((tmp_path / "experiments" / f"{s}.yaml").read_text())["question"] for s in studies}
    assert max(map(len, questions.values())) > 120  # else this test would test nothing
    for columns, width in (("300", 120), ("120", 120), ("100", 100), ("40", 80)):
        monkeypatch.setenv("COLUMNS", columns)
        code, out, _ = run(capsys, "--root", str(tmp_path), "studies", "--no-dvc")
        assert code == 0
        lines = out.splitlines()
        assert max(map(len, lines)) <= width, columns
        rows = [re.split(r"\s{2,}", line, maxsplit=4) for line in lines[2:]]
        assert [r[:4] for r in rows] == [[s, "none", "none", "?"] for s in studies]
        for (study, *_, question), full in zip(rows, questions.values(), strict=True):
            assert question == full or (question.endswith(" …") and full.startswith(question[:-2])), study


def test_studies_shorten_a_long_question(capsys, project, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    question = "Does a tiny MLP prefer relu " + "over tanh " * 40 + "?"
    (project / "experiments" / "demo.yaml").write_text(yaml.safe_dump({**SPEC, "question": question}))
    code, out, _ = run(capsys, "--root", str(project), "studies", "--no-dvc")
    assert code == 0
    row = out.splitlines()[2]
    assert len(row) <= 120 and row.endswith(" …") and "Does a tiny MLP prefer relu over tanh" in row
    assert row.split()[:6] == ["demo", "6", "runs", "(default)", "none", "?"]


# --------------------------------------------------------------------------- progress lines


def trial(trial_id: str, status: str, config: dict, last_result: dict | None = None):
    return SimpleNamespace(trial_id=trial_id, status=status, config=config, last_result=last_result or {})


def test_progress_prints_one_plain_line_per_event():
    stream = io.StringIO()  # not a TTY: no colour
    p = TrialProgress("demo", "val_accuracy", "max", stream=stream, heartbeat_s=3600)
    p.setup(total_num_samples=3)
    t1 = trial("t1", "PENDING", {"model.activation": "relu", "seed": 0})
    t2 = trial("t2", "PENDING", {"model.activation": "tanh", "seed": 0})
    t3 = trial("t3", "PENDING", {"model.activation": "sigmoid", "seed": 0})
    trials = [t1, t2, t3]
    p.on_trial_start(0, trials, t1)  # Tune marks it RUNNING only after this call
    t1.status = "RUNNING"
    p.on_trial_result(0, trials, t1, {"val_accuracy": 0.5, "epoch": 1})
    p.on_trial_result(0, trials, t1, {"val_accuracy": 0.4, "epoch": 2})  # not better: no line
    t1.last_result = {"val_accuracy": 0.4}
    p.on_trial_complete(0, trials, t1)  # still RUNNING when Tune calls this
    t1.status = "TERMINATED"
    t2.status = "ERROR"
    p.on_trial_error(0, trials, t2)
    p.on_experiment_end(trials)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert "\x1b" not in stream.getvalue() and all(ch.isascii() for ch in stream.getvalue())
    assert "start  relu seed=0  (trial t1)  | 0/3 done, 1 running, 0 failed, 2 pending | best -" in lines[0]
    assert "best   relu seed=0  val_accuracy 0.5 at epoch 1  |" in lines[1] and lines[1].endswith(
        "best 0.5 relu seed=0"
    )
    assert "done   relu seed=0  val_accuracy 0.4  | 1/3 done, 0 running, 0 failed, 2 pending" in lines[2]
    assert "failed tanh seed=0" in lines[3] and "1/3 done, 0 running, 1 failed, 1 pending" in lines[3]
    assert lines[4].split("]")[1].startswith(" demo  end")


def test_progress_colours_only_on_a_terminal():
    stream = io.StringIO()
    p = TrialProgress("demo", "val_loss", "min", stream=stream, color=True)
    t = trial("t1", "RUNNING", {"seed": 1})
    p.on_trial_result(0, [t], t, {"val_loss": 0.3, "epoch": 1})
    p.on_trial_result(0, [t], t, {"val_loss": 0.2, "epoch": 2})  # lower is better in mode min
    out = stream.getvalue()
    assert out.count("\x1b[") == 4 and "best 0.2 seed=1" in out
