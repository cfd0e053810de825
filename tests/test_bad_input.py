"""Bad or corrupt input, as a careless user makes it, through the real commands.

Every case: exit code 2, exactly one line on stderr naming the file (and the key where there is one), no
traceback, and nothing half-written or lost: a report or page that existed before is byte-identical after.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from test_html import fake_runs

from pipeline.cli import main as cli_main
from pipeline.errors import ConfigError
from pipeline.report.build import OUTPUTS
from tests.conftest import TINY_SPEC, write_params

REPO = Path(__file__).resolve().parents[1]
VALUES = {"relu": [0.9, 0.92, 0.94], "tanh": [0.8, 0.82, 0.84]}


def stage_main(name: str) -> Callable[[list[str]], int]:
    """`main` of stages/<name>.py, imported as DVC runs it (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location(f"{name}_stage_bad_input", REPO / "stages" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def one_line(err: str, *needles: str) -> str:
    """The one error line on stderr, which must contain every needle."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what "nothing touched" compares."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[Path]:
    """Temporary build folders or files left next to `out`."""
    return [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def edit_json(path: Path, change: Callable[[object], object]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A project folder with study `demo`: dvc.yaml, params.yaml, the spec, its results and its report."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    write_params(root, studies=["demo"])
    (root / "experiments").mkdir()
    (root / "experiments" / "demo.yaml").write_text(yaml.safe_dump({**TINY_SPEC, "seeds": 3}))
    results = root / "results" / "demo"
    results.mkdir(parents=True)
    (results / "runs.json").write_text(json.dumps(fake_runs(VALUES)))
    (results / "sweep.json").write_text(json.dumps({"study": "demo", "profile": "tiny", "experiment_id": "1"}))
    (root / "site").mkdir()
    (root / "site" / "index.html").write_text("<p>the last good page</p>\n")
    code = stage_main("report")(report_argv(root))
    assert code == 0 and (root / "reports" / "demo" / "analysis.json").is_file()
    return root


@pytest.fixture
def project(built, tmp_path) -> Path:
    """A fresh copy of the built project, for a test to damage."""
    return Path(shutil.copytree(built, tmp_path / "project"))


def report_argv(root: Path, results: str = "results/demo") -> list[str]:
    return [
        *("--params", str(root / "params.yaml"), "--study", str(root / "experiments" / "demo.yaml")),
        *("--results", str(root / results), "--out", str(root / "reports" / "demo"), "--no-mlflow"),
    ]


def index_argv(root: Path) -> list[str]:
    return [
        "--params",
        str(root / "params.yaml"),
        "--reports",
        str(root / "reports"),
        "--out",
        str(root / "site" / "index.html"),
    ]


# --------------------------------------------------------------------------- 0. a study's report sections


def test_a_report_section_typo_stops_the_preflight_and_the_specs_stage(tmp_path):
    """`report: [recurrent_paramz]` in the repository's rnn_cells study: refused before any sweep, by
    `python -m pipeline.preflight` and by the specs stage (the first of `dvc repro`), in one line naming the file, the
    key and the sections there are; no fingerprint is written."""
    from pipeline.sections import list_sections

    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    study = tmp_path / "experiments" / "rnn_cells.yaml"
    text = study.read_text()
    assert "report: [recurrent_params]" in text
    study.write_text(text.replace("report: [recurrent_params]", "report: [recurrent_paramz]"))
    expected = (
        "error: experiments/rnn_cells.yaml: report.0: unknown report section 'recurrent_paramz'; "
        f"allowed: {', '.join(list_sections())}"
    )
    commands = [
        [sys.executable, "-m", "pipeline.preflight", "--no-services"],
        [sys.executable, str(REPO / "stages" / "specs.py"), "--experiments", "experiments", "--out", "specs"],
    ]
    for cmd in commands:
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and res.stdout == "", res.stderr
        assert one_line(res.stderr) == expected
    assert not (tmp_path / "specs").exists()


# --------------------------------------------------------------------------- 1. prepared data


def _resign(folder: Path) -> None:
    """Record the .pt's current checksum in its metadata, so that the damage reaches the tensor checks."""
    meta = folder / "digits.json"
    m = json.loads(meta.read_text())
    m["sha256"] = hashlib.sha256((folder / "digits.pt").read_bytes()).hexdigest()
    meta.write_text(json.dumps(m))


def _pt_garbage(folder: Path) -> None:
    (folder / "digits.pt").write_bytes(b"PK\x03\x04 not a torch file")
    _resign(folder)


def _pt_missing_split(folder: Path) -> None:
    torch.save({"x_train": torch.zeros(3, 1, 8, 8)}, folder / "digits.pt")
    _resign(folder)


def _pt_truncated(folder: Path) -> None:
    pt = folder / "digits.pt"
    pt.write_bytes(pt.read_bytes()[:1000])


def _json_truncated(folder: Path) -> None:
    meta = folder / "digits.json"
    meta.write_text(meta.read_text()[:100])


def _json_without(key: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        edit_json(folder / "digits.json", lambda m: {k: v for k, v in m.items() if k != key})

    return damage


def _json_shape(folder: Path) -> None:
    edit_json(folder / "digits.json", lambda m: {**m, "info": {**m["info"], "input_shape": 5}})


PREPARED_DAMAGE = {
    "json truncated": (_json_truncated, "digits.json", None, "not readable JSON"),
    "json a list": (lambda f: (f / "digits.json").write_text("[1, 2]"), "digits.json", None, "must be a JSON object"),
    "json without sha256": (_json_without("sha256"), "digits.json", "sha256", "missing"),
    "json without info": (_json_without("info"), "digits.json", "info", "missing"),
    "json wrong type": (_json_shape, "digits.json", "info.input_shape", "must be a list of positive integers"),
    "pt truncated": (_pt_truncated, "digits.pt", None, "checksum does not match"),
    "pt not torch": (_pt_garbage, "digits.pt", None, "not a readable torch file"),
    "pt missing a split": (_pt_missing_split, "digits.pt", "y_train", "missing"),
}


@pytest.mark.parametrize("case", list(PREPARED_DAMAGE))
def test_corrupt_prepared_data_is_one_line_from_the_study_stage(case, project, prepared_dir, capsys):
    damage, name, key, message = PREPARED_DAMAGE[case]
    data = Path(shutil.copytree(prepared_dir, project / "prepared"))
    damage(data)
    argv = ["--params", str(project / "params.yaml"), "--study", str(project / "experiments" / "demo.yaml")]
    code = stage_main("study")([*argv, "--data", str(data), "--out", str(project / "fresh_results")])
    assert code == 2
    needles = [f"{data / name}: ", message, "dvc repro prepare"] + ([f": {key}: "] if key else [])
    one_line(capsys.readouterr().err, *needles)
    assert not (project / "fresh_results").exists() and not (project / "mlflow.db").exists()


def test_every_reader_of_prepared_data_gets_the_same_error(prepared_dir, tmp_path):
    """load_prepared is the one reader (the study stage, the report's model loader, rerun): one ConfigError."""
    from pipeline.data import load_prepared

    data = Path(shutil.copytree(prepared_dir, tmp_path / "prepared"))
    _json_truncated(data)
    with pytest.raises(ConfigError) as e:
        load_prepared(data, "digits")
    assert e.value.file == str(data / "digits.json") and "\n" not in str(e.value)
    assert load_prepared(data, "synthetic").x_train.ndim == 2  # the other data set is unharmed


def test_corrupt_prepared_data_as_a_process(project, prepared_dir):
    """The study stage as DVC runs it: one line on stderr, exit code 2, no traceback."""
    data = Path(shutil.copytree(prepared_dir, project / "prepared"))
    _json_truncated(data)
    argv = ["--params", "params.yaml", "--study", "experiments/demo.yaml", "--data", "prepared", "--out", "r"]
    res = subprocess.run(
        [sys.executable, str(REPO / "stages" / "study.py"), *argv], cwd=project, capture_output=True, text=True
    )
    assert res.returncode == 2
    one_line(res.stderr, "error: prepared/digits.json: not readable JSON", "dvc repro prepare")


# --------------------------------------------------------------------------- 2, 3, 7. the report stage

RESULTS_DAMAGE = {
    "runs.json missing": (lambda r: (r / "runs.json").unlink(), "runs.json", None, "missing"),
    "sweep.json missing": (lambda r: (r / "sweep.json").unlink(), "sweep.json", None, "missing"),
    "runs.json truncated": (
        lambda r: (r / "runs.json").write_text('[{"run_id": "a'),
        "runs.json",
        None,
        "not readable JSON",
    ),
    "sweep.json not JSON": (
        lambda r: (r / "sweep.json").write_text("study: demo\n"),
        "sweep.json",
        None,
        "not readable JSON",
    ),
    "runs.json an object": (lambda r: (r / "runs.json").write_text("{}"), "runs.json", None, "must be a list of runs"),
    "sweep.json a list": (lambda r: (r / "sweep.json").write_text("[]"), "sweep.json", None, "must be a JSON object"),
    "a run without status": (
        lambda r: edit_json(r / "runs.json", lambda runs: [{k: v for k, v in runs[0].items() if k != "status"}]),
        "runs.json",
        "0.status",
        "missing",
    ),
    "a bad history pair": (
        lambda r: edit_json(r / "runs.json", lambda runs: [{**runs[0], "history": {"val_loss": [[1]]}}]),
        "runs.json",
        "0.history.val_loss.0",
        "[step, value] pair",
    ),
    "a non-numeric seed tag": (
        lambda r: edit_json(r / "runs.json", lambda runs: [{**runs[0], "tags": {"seed": "one"}}]),
        "runs.json",
        "0.tags.seed",
        "must be a whole number",
    ),
    "sweep.json without study": (lambda r: (r / "sweep.json").write_text("{}"), "sweep.json", "study", "missing"),
}


@pytest.mark.parametrize("case", list(RESULTS_DAMAGE))
def test_missing_or_corrupt_results_are_one_line_and_leave_the_report(case, project, capsys):
    damage, name, key, message = RESULTS_DAMAGE[case]
    results, out = project / "results" / "demo", project / "reports" / "demo"
    damage(results)
    before = snapshot(out)
    assert stage_main("report")(report_argv(project)) == 2
    needles = [f"{results / name}: ", message] + ([f": {key}: "] if key else [])
    one_line(capsys.readouterr().err, *needles)
    assert snapshot(out) == before and not leftovers(out)


def test_corrupt_results_without_a_report_write_nothing(project, capsys):
    shutil.rmtree(project / "reports")
    (project / "results" / "demo" / "runs.json").write_text("[")
    assert stage_main("report")(report_argv(project)) == 2
    one_line(capsys.readouterr().err, str(project / "results" / "demo" / "runs.json"))
    assert not (project / "reports" / "demo").exists()


def test_another_studys_results_are_refused_and_nothing_is_touched(project, capsys):
    other = project / "results" / "other"
    shutil.copytree(project / "results" / "demo", other)
    edit_json(other / "sweep.json", lambda s: {**s, "study": "other"})
    out = project / "reports" / "demo"
    before = snapshot(out)
    assert stage_main("report")(report_argv(project, results="results/other")) == 2
    line = one_line(capsys.readouterr().err, f"{other / 'sweep.json'}: study: ", "'other'", "'demo'")
    assert line.startswith("error: ")
    assert snapshot(out) == before and not leftovers(out)


@pytest.mark.parametrize(
    "error", [ConfigError("the prepared data went away", file="data/prepared/x.pt"), RuntimeError("bug")]
)
def test_a_report_that_fails_midway_leaves_the_last_report_intact(error, project, monkeypatch, capsys):
    """An exception after figures were written: the report folder is exactly what it was, no temp folder left."""
    import pipeline.report.build as build

    out = project / "reports" / "demo"
    before = snapshot(out)
    assert {"figures", "curves", "tables", "summary.md", "analysis.json", "metrics.json"} == set(OUTPUTS)
    seen: list[Path] = []

    def failing_confusion(*args, **kwargs):  # runs after the standard figures are written
        seen.extend(p for d in leftovers(out) for p in (d / "figures").glob("*.png"))
        raise error

    monkeypatch.setattr(build, "confusion", failing_confusion)
    main = stage_main("report")
    if isinstance(error, ConfigError):
        assert main(report_argv(project)) == 2
        one_line(capsys.readouterr().err, "data/prepared/x.pt: the prepared data went away")
    else:  # a bug is not bad input: its traceback is the point, but the last report still stands
        with pytest.raises(RuntimeError):
            main(report_argv(project))
    assert seen, "the failure should come after some figures were written"
    assert snapshot(out) == before and not leftovers(out)


def test_a_rebuilt_report_replaces_every_output_and_drops_stale_files(project, capsys):
    out = project / "reports" / "demo"
    (out / "figures" / "stale.png").write_bytes(b"old")
    (out / "tables" / "stale.md").write_text("old")
    (out / "notes.txt").write_text("not an output of the stage: left alone")
    edit_json(
        project / "results" / "demo" / "runs.json", lambda runs: [r for r in runs if r["tags"]["variant"] == "relu"]
    )
    assert stage_main("report")(report_argv(project)) == 0
    assert not (out / "figures" / "stale.png").exists() and not (out / "tables" / "stale.md").exists()
    assert (out / "notes.txt").read_text().startswith("not an output")
    assert list(json.loads((out / "analysis.json").read_text())["variants"]) == ["relu"]
    assert all((out / name).exists() for name in OUTPUTS) and not leftovers(out)


# --------------------------------------------------------------------------- 4. pipeline show / studies


def cli(capsys, project: Path, *argv: str) -> tuple[int, str, str]:
    code = cli_main(["--root", str(project), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _truncate(path: Path) -> None:
    path.write_text(path.read_text()[:40])


SHOW_DAMAGE = {
    "analysis.json truncated": (
        lambda p: _truncate(p / "reports/demo/analysis.json"),
        "reports/demo/analysis.json",
        None,
    ),
    "analysis.json a list": (
        lambda p: (p / "reports/demo/analysis.json").write_text("[]"),
        "reports/demo/analysis.json",
        None,
    ),
    "analysis.json without variants": (
        lambda p: edit_json(
            p / "reports/demo/analysis.json", lambda a: {k: v for k, v in a.items() if k != "variants"}
        ),
        "reports/demo/analysis.json",
        "variants",
    ),
    "a variant row of the wrong type": (
        lambda p: edit_json(
            p / "reports/demo/analysis.json",
            lambda a: {**a, "variants": {**a["variants"], "relu": {**a["variants"]["relu"], "runs": "three"}}},
        ),
        "reports/demo/analysis.json",
        "variants.relu.runs",
    ),
    "a study YAML that is not YAML (read for an old report's question)": (
        lambda p: (
            edit_json(p / "reports/demo/analysis.json", lambda a: {k: v for k, v in a.items() if k != "question"}),
            (p / "experiments/demo.yaml").write_text("question: [unclosed\n"),
        ),
        "experiments/demo.yaml",
        None,
    ),
}


@pytest.mark.parametrize("case", list(SHOW_DAMAGE))
def test_show_on_corrupt_files_is_one_line(case, project, capsys):
    damage, rel, key = SHOW_DAMAGE[case]
    damage(project)
    code, out, err = cli(capsys, project, "show", "demo")
    assert code == 2 and out == ""
    one_line(err, f"error: {project / rel}: ", *([f": {key}: "] if key else []))


STUDIES_DAMAGE = {
    "runs.json": (lambda p: _truncate(p / "results/demo/runs.json"), "results/demo/runs.json", "results"),
    "sweep.json": (
        lambda p: (p / "results/demo/sweep.json").write_text('"demo"'),
        "results/demo/sweep.json",
        "results",
    ),
    "analysis.json": (lambda p: _truncate(p / "reports/demo/analysis.json"), "reports/demo/analysis.json", "report"),
    "study YAML": (
        lambda p: (p / "experiments/demo.yaml").write_text("- a list\n"),
        "experiments/demo.yaml",
        "question",
    ),
}


@pytest.mark.parametrize("case", list(STUDIES_DAMAGE))
def test_studies_lists_a_corrupt_file_and_goes_on(case, project, capsys):
    """A listing does not die on one bad study: its cell says `corrupt: FILE`, stderr one line, exit code 2."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump({**params, "studies": ["demo", "later"]}))
    damage, rel, column = STUDIES_DAMAGE[case]
    damage(project)
    code, out, err = cli(capsys, project, "studies", "--no-dvc")
    assert code == 2
    one_line(err, f"error: {project / rel}: ")
    header, _, demo, later = out.splitlines()
    assert demo.startswith("demo ") and f"corrupt: {rel}" in demo
    assert header.index(column) == demo.index("corrupt: ")
    assert later.split()[:4] == ["later", "none", "none", "?"]  # the study after the bad one is still listed


# --------------------------------------------------------------------------- 5. rerun


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_rerun_refuses_a_bad_thread_count_before_doing_anything(threads, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.rerun", "0" * 32, "--threads", threads, "--tracking-uri", "sqlite:///x.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stdout == ""
    one_line(res.stderr, "--threads", "must be a whole number >= 1", repr(threads))
    assert not (tmp_path / "x.db").exists()  # refused before the store was opened


# --------------------------------------------------------------------------- 6. the index stage


INDEX_DAMAGE = {
    "truncated": (lambda a: _truncate(a), None),
    "not an object": (lambda a: a.write_text('"report"'), None),
    "no answer": (lambda a: edit_json(a, lambda d: {k: v for k, v in d.items() if k != "answer"}), "answer"),
    "a bad run link": (
        lambda a: edit_json(
            a, lambda d: {**d, "variants": {**d["variants"], "tanh": {**d["variants"]["tanh"], "run_ids": [7]}}}
        ),
        "variants.tanh.run_ids.0",
    ),
    "a bad statistic": (
        lambda a: edit_json(
            a,
            lambda d: {
                **d,
                "variants": {**d["variants"], "tanh": {**d["variants"]["tanh"], "val_accuracy": {"mean": "high"}}},
            },
        ),
        "variants.tanh.val_accuracy",
    ),
}


@pytest.mark.parametrize("case", list(INDEX_DAMAGE))
def test_index_stage_on_a_corrupt_report_is_one_line_and_keeps_the_last_page(case, project, capsys):
    damage, key = INDEX_DAMAGE[case]
    analysis = project / "reports" / "demo" / "analysis.json"
    damage(analysis)
    page = project / "site" / "index.html"
    before = page.read_bytes()
    assert stage_main("index")(index_argv(project)) == 2
    one_line(capsys.readouterr().err, f"error: {analysis}: ", "dvc repro report@demo", *([f": {key}: "] if key else []))
    assert page.read_bytes() == before and not leftovers(page)


def test_index_stage_replaces_the_page_whole(project, capsys):
    page = project / "site" / "index.html"
    assert stage_main("index")(index_argv(project)) == 0
    assert "<section" in page.read_text() and not leftovers(page)


def test_scratch_report_from_the_cli_checks_the_results_too(project, capsys):
    """`pipeline report STUDY --out DIR` builds through the same checks: one line, DIR never created."""
    edit_json(project / "results" / "demo" / "sweep.json", lambda s: {**s, "study": "other"})
    code, out, err = cli(capsys, project, "report", "demo", "--out", str(project / "scratch"))
    assert code == 2 and out == ""
    one_line(err, f"error: {project / 'results' / 'demo' / 'sweep.json'}: study: ")
    assert not (project / "scratch").exists() and not leftovers(project / "scratch")
