"""Command-line entry points. Every one turns a ConfigError into one line on stderr and exit code 2.

`pipeline` (the console script, see USAGE) drives the studies through DVC, so `dvc.lock` always tells
the truth. What every entry point shares (`guarded`, `setup_logging`) is in `pipeline.entry`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.entry import ArgParser, guarded, setup_logging
from pipeline.errors import ConfigError
from pipeline.paths import project_root

if TYPE_CHECKING:  # the CLI imports the config layer only when a command needs it (fast --help)
    from pipeline.config import Study

USAGE = """Run the studies through DVC and read their answers (dvc.lock stays true).

    pipeline studies                     every study in params.yaml: results, report, DVC status
    pipeline run STUDY [--profile P]     dvc repro report@STUDY  (another profile: dvc exp run -S profile=P ...)
    pipeline report STUDY [--out DIR]    dvc repro --single-item report@STUDY  (or a scratch copy in DIR)
    pipeline show STUDY                  the question, the claims' verdicts, the answer and the table

Bad input prints one line and exits with code 2."""


# --------------------------------------------------------------------------- the project's layout


class Project:
    """params.yaml and the per-study paths, read from dvc.yaml's command lines (never hard-coded here)."""

    def __init__(self, root: Path):
        from pipeline.config import load_params

        self.root = root
        self.params_file = root / "params.yaml"
        self.params = load_params(self.params_file)
        self._dvc = self._read_dvc_yaml()

    def _read_dvc_yaml(self) -> dict[str, Any]:
        from pipeline.config import read_yaml

        return read_yaml(self.root / "dvc.yaml")

    def relative(self, path: str | None) -> str:
        """`path` as shown to the user: relative to the project folder when inside it."""
        if path is None:
            return "?"
        p = Path(path)
        return str(p.relative_to(self.root)) if p.is_relative_to(self.root) else path

    def check_study(self, name: str) -> str:
        if name not in self.params.studies:
            allowed = ", ".join(self.params.studies) or "none"
            raise ConfigError(f"unknown study {name!r}; params.yaml studies: {allowed}", file=str(self.params_file))
        return name

    def stage_args(self, stage: str, study: str) -> dict[str, str]:
        """The `--flag value` pairs of a foreach stage's command for one study."""
        stages = self._dvc.get("stages")
        entry = stages.get(stage) if isinstance(stages, dict) else None
        do = entry.get("do") if isinstance(entry, dict) else None
        if not isinstance(do, dict) or not isinstance(do.get("cmd"), str):
            raise ConfigError(f"no foreach stage {stage!r} with a cmd", file=str(self.root / "dvc.yaml"))
        try:
            words = shlex.split(do["cmd"].replace("${item}", study))
        except ValueError as e:  # an unclosed quote
            raise ConfigError(
                f"cannot split the command: {e}", file=str(self.root / "dvc.yaml"), key=f"stages.{stage}.do.cmd"
            ) from None
        return {w[2:]: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}

    def paths(self, study: str) -> dict[str, Path]:
        args = self.stage_args("report", study)
        missing = [f"--{k}" for k in ("study", "results", "out") if k not in args]
        if missing:
            raise ConfigError(
                f"the command lacks {', '.join(missing)}", file=str(self.root / "dvc.yaml"), key="stages.report.do.cmd"
            )
        return {
            "spec": self.root / args["study"],
            "results": self.root / args["results"],
            "report": self.root / args["out"],
            "data": self.root / args["data"] if "data" in args else None,
        }


def _dvc() -> str:
    exe = Path(sys.executable).with_name("dvc")
    return str(exe) if exe.exists() else (shutil.which("dvc") or "dvc")


def dvc_status(root: Path) -> dict[str, bool] | None:
    """stage name -> changed, from `dvc status --json`; None when DVC cannot tell (no git, no DVC repo)."""
    try:
        res = subprocess.run([_dvc(), "status", "--json"], cwd=root, capture_output=True, text=True, timeout=120)
        changed = json.loads(res.stdout) if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return None
    if changed is None:
        return None
    return {name: True for name in changed}


# --------------------------------------------------------------------------- commands


def cmd_studies(project: Project, args: argparse.Namespace) -> int:
    """The listing goes on past a damaged file: its cell reads `corrupt: FILE`, its error is one line on stderr,
    and the exit code is 2 once the table is printed."""
    status = None if args.no_dvc else dvc_status(project.root)
    rows, problems = [], []

    def cell(read: Callable[..., str], *args: Any) -> str:
        try:
            return read(*args)
        except ConfigError as e:
            problems.append(e)
            return f"corrupt: {project.relative(e.file)}"

    for name in project.params.studies:
        p = project.paths(name)
        if status is None:
            dvc = "?"
        else:
            stale = [s for s in (f"study@{name}", f"report@{name}") if status.get(s)]
            dvc = "changed: " + ", ".join(s.split("@")[0] for s in stale) if stale else "up to date"
        rows.append(
            {
                "study": name,
                "results": cell(_results_cell, p["results"], name),
                "report": cell(_report_cell, p["report"]),
                "dvc": dvc,
                "question": cell(_question_cell, p["spec"]),
            }
        )
    if not rows:
        print("no studies in params.yaml")
        return 0
    print(_table(rows, width=_width(80, 120), shrink="question"))
    if status is None and not args.no_dvc:
        print("(dvc status unavailable: not a git + DVC checkout?)")
    for e in problems:
        print(f"error: {e}", file=sys.stderr)
    return 2 if problems else 0


def _results_cell(results: Path, study: str) -> str:
    """`N runs (profile)`, or none; only what the listing shows is checked (the report stage checks the rest)."""
    from pipeline.jsonfile import read_json

    runs_file, sweep_file = results / "runs.json", results / "sweep.json"
    if not (runs_file.is_file() and sweep_file.is_file()):
        return "none"
    remedy = f"re-run the study stage (dvc repro study@{study})"
    sweep, runs = read_json(sweep_file, remedy), read_json(runs_file, remedy)
    if not isinstance(sweep, dict):
        raise ConfigError(f"must be a JSON object; {remedy}", file=str(sweep_file))
    if not isinstance(runs, list):
        raise ConfigError(f"must be a list of runs; {remedy}", file=str(runs_file))
    return f"{len(runs)} runs ({sweep.get('profile')})"


def _report_cell(report: Path) -> str:
    from pipeline.html import load_report

    if not (report / "analysis.json").is_file():
        return "none"
    load_report(report)  # checked: "yes" means `pipeline show` and the index page can read it
    return "yes"


def _question_cell(spec: Path) -> str:
    from pipeline.config import read_yaml

    return str(read_yaml(spec).get("question", "")) if spec.is_file() else ""


def run_command(project: Project, study: str, profile: str | None, retrain: bool = False) -> list[str]:
    """How `pipeline run` runs a study through DVC.

    Without a profile (or with the one params.yaml already names): `dvc repro report@STUDY`. With another
    profile: `dvc exp run -S profile=P report@STUDY`, which lets DVC itself set `profile` in params.yaml,
    records the params in dvc.lock (so `dvc status` stays true) and keeps the run as a DVC experiment
    (`dvc exp show`). The workspace keeps profile=P afterwards, as DVC leaves it. `retrain` adds `--force`
    (the caller sets PIPELINE_RETRAIN=1, so that the sweep reuses no earlier trial).
    """
    target = f"report@{study}"
    force = ["--force"] if retrain else []
    if profile is None or profile == project.params.profile:
        return [_dvc(), "repro", *force, target]
    if profile not in project.params.profiles:
        allowed = ", ".join(project.params.profiles)
        raise ConfigError(f"unknown profile {profile!r}; allowed: {allowed}", file=str(project.params_file))
    return [_dvc(), "exp", "run", *force, "-S", f"profile={profile}", target]


def _run(cmd: list[str], root: Path, dry_run: bool, env: dict[str, str] | None = None) -> int:
    shown = [f"{k}={v}" for k, v in (env or {}).items()]
    shown += [shlex.quote(Path(c).name if i == 0 else c) for i, c in enumerate(cmd)]
    print("$ " + " ".join(shown), flush=True)
    if dry_run:
        return 0
    return subprocess.run(cmd, cwd=root, env={**os.environ, **env} if env else None).returncode


def load_checked_study(project: Project, name: str, profile: str | None = None) -> Study:
    """The study's spec in `profile` (default: the one params.yaml names), its report sections checked: before DVC
    runs anything, so that a bad section name fails at once, not in the report stage after the sweep."""
    from pipeline.config import load_study
    from pipeline.sections import check_sections

    params = project.params if profile is None else project.params.model_copy(update={"profile": profile})
    study = load_study(project.paths(name)["spec"], params, str(project.params_file))
    check_sections(study.spec.report, str(study.path))
    return study


def cmd_run(project: Project, args: argparse.Namespace) -> int:
    name = project.check_study(args.study)
    cmd = run_command(project, name, args.profile, args.retrain)  # checks the profile first
    load_checked_study(project, name, args.profile)
    if not args.dry_run:
        # Every study in every profile and the services before DVC starts a stage (and, with --profile, before
        # `dvc exp run -S` edits params.yaml, which a refused run would leave edited). No output would be lost
        # either way (every one is `persist: true`); the time a doomed stage would spend is.
        from pipeline.preflight import preflight
        from pipeline.sections import check_sections

        preflight(project.params_file, project.paths(name)["spec"].parent, check_report=check_sections)
    from pipeline.sweep import RETRAIN_ENV

    return _run(cmd, project.root, args.dry_run, {RETRAIN_ENV: "1"} if args.retrain else None)


def cmd_report(project: Project, args: argparse.Namespace) -> int:
    name = project.check_study(args.study)
    study = load_checked_study(project, name)
    if args.out is None:
        # --single-item: rebuild the report from the current results without re-running a stale sweep
        return _run([_dvc(), "repro", "--single-item", f"report@{name}"], project.root, args.dry_run)
    from pipeline.report.build import build_report

    p = project.paths(name)
    if not (p["results"] / "runs.json").is_file():
        raise ConfigError("no results yet; run `pipeline run STUDY` first", file=str(p["results"] / "runs.json"))
    setup_logging()
    data = p["data"] if p["data"] and p["data"].is_dir() else None
    # log_to_mlflow=False: a scratch copy must not replace the pipeline's report in MLflow
    out = build_report(study, p["results"], args.out, data, log_to_mlflow=False)
    print(f"wrote {args.out}: {out['analysis']['answer']}")
    return 0


def cmd_show(project: Project, args: argparse.Namespace) -> int:
    """The question; the claims' verdicts, one line each; the headline (the answer's first sentences); the table;
    then the detail: the rest of the answer, the claims' reasons and the arithmetic checks."""
    from pipeline.html import load_report
    from pipeline.report.markdown import how_measured, table_rows

    study = project.check_study(args.study)
    paths = project.paths(study)
    a = load_report(paths["report"])
    question = a.get("question")
    if not question and paths["spec"].is_file():  # a report built before the question was stored in it
        from pipeline.config import read_yaml

        question = read_yaml(paths["spec"]).get("question", "")
    width = _width(60, 120)
    claims, checks = a.get("claims") or [], a.get("checks") or []
    # The report's answer in its parts (claims, headline, detail); a report built before the parts: all headline.
    parts = a.get("answer_parts") or {"headline": [a["answer"]], "detail": []}

    print(textwrap.fill(f"{study}: {question}", width=width, subsequent_indent="    "))
    if claims or checks:
        print()
        print("claims, one line each (their reasons are below the table):" if claims else "no inferential claims")
        pad = max(len(c["verdict"]) for c in claims) if claims else 0
        for c in claims:
            print(f"  {c['verdict'].ljust(pad)}  " + _trim(c["claim"], width - pad - 4))
        if checks:
            held = sum(c["verdict"] == "confirmed" for c in checks)
            print(f"  + {len(checks)} arithmetic check{'s' * (len(checks) != 1)} (not inference), {held} hold")
    print()
    print(textwrap.fill(" ".join(parts["headline"]), width=width))
    print()
    rows = table_rows(a)
    if rows:
        print(_table(rows))
        print(textwrap.fill(how_measured(a), width=width))
    if parts["detail"]:
        print()
        print(textwrap.fill(" ".join(parts["detail"]), width=width))
    conf = a.get("confusion") or {}
    if "accuracy" in conf:
        best = f"{conf['variant']}, seed {conf['seed']}, run {conf['run_id']}"
        print(f"\nbest run ({best}) on the test split: accuracy {conf['accuracy']:.4g}")
    for title, items in (("claims", claims), ("checks (arithmetic identities, apart from the claims)", checks)):
        if items:
            print(f"\n{title}:")
        for c in items:
            print(textwrap.fill(f"[{c['verdict']}] {c['claim']}", width=width, subsequent_indent="    "))
            if c.get("settled"):  # the seeds it used; with sequential looks, the look that decided it
                print(
                    textwrap.fill(
                        f"seeds: {c['settled']}", width=width, initial_indent="    ", subsequent_indent="    "
                    )
                )
            if c["reason"]:
                print(textwrap.fill(c["reason"], width=width, initial_indent="    ", subsequent_indent="    "))
    return 0


def _trim(text: str, width: int) -> str:
    """`text` on one line of at most `width` characters, cut at a word and ending in "…" when it was longer."""
    return textwrap.shorten(text, max(width, 12), placeholder=" …")


def _width(lo: int, hi: int) -> int:
    """The terminal's width (COLUMNS when set), kept within [lo, hi]."""
    return max(lo, min(shutil.get_terminal_size((hi, 20)).columns, hi))


def _table(rows: list[dict[str, str]], width: int | None = None, shrink: str | None = None) -> str:
    """Plain aligned columns: readable in a terminal and in a log file alike. With `width`, the cells of the column
    `shrink` are shortened (ending in "…") so that every line fits; the other columns stay whole."""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    cells = [{c: str(r[c]) for c in cols} for r in rows]
    if width is not None and shrink in widths:
        room = width - sum(w + 2 for c, w in widths.items() if c != shrink)
        widths[shrink] = max(len(shrink), min(widths[shrink], room), 12)
        for r in cells:
            if len(r[shrink]) > widths[shrink]:
                r[shrink] = _trim(r[shrink], widths[shrink])
    lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip(), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols).rstrip() for r in cells]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = ArgParser(prog="pipeline", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None, help="project folder with params.yaml and dvc.yaml (default: .)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgParser)

    p = sub.add_parser("studies", help="list the studies with the state of their results and reports")
    p.add_argument("--no-dvc", action="store_true", help="skip `dvc status` (faster)")
    p.set_defaults(fn=cmd_studies)

    p = sub.add_parser(
        "run",
        help="run a study (sweep and report) through DVC",
        description=inspect.cleandoc(run_command.__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study")
    p.add_argument("--profile", help="a profile of params.yaml (default, tiny, full, ...)")
    p.add_argument("--dry-run", action="store_true", help="print the DVC command only")
    p.add_argument("--retrain", action="store_true", help="train every trial again, reusing none from earlier sweeps")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("report", help="rebuild a study's report from its current results")
    p.add_argument("study")
    p.add_argument("--out", type=Path, help="write a scratch report here instead (no DVC, no MLflow logging)")
    p.add_argument("--dry-run", action="store_true", help="print the DVC command only")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("show", help="print a study's question, answer and table")
    p.add_argument("study")
    p.set_defaults(fn=cmd_show)
    return ap


@guarded
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = (args.root or project_root()).resolve()
    if not (root / "params.yaml").is_file():
        raise ConfigError("no params.yaml here; run from the project folder or pass --root", file=str(root))
    return args.fn(Project(root), args)
