"""`build_report`: the whole report folder of one study, from its exported runs and its spec."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Claim, Study
from pipeline.errors import ConfigError
from pipeline.jsonfile import is_number, json_kind, read_json
from pipeline.report.analysis import ALPHA, ChanceFn, analyze, answer_parts, answer_text, fill_comparisons, metrics_file
from pipeline.report.chance import ChanceLevels
from pipeline.report.claims import evaluate_claims, members
from pipeline.report.confusion import confusion
from pipeline.report.figures import confusion_figure, standard_figures, write_curve_csvs
from pipeline.report.gate import Family
from pipeline.report.markdown import summary_markdown
from pipeline.report.mlflow_log import log_report
from pipeline.report.settle import Settlement, claim_settlement, replay, settled_texts
from pipeline.report.superiority import sentence, superiority
from pipeline.runs import Run
from pipeline.sections import Context, check_sections, get_section

log = logging.getLogger(__name__)

# The report's declared outputs (dvc.yaml's outs, metrics and plots of report@<study>). Each is replaced whole, and
# only once the whole report is built: DVC keeps them between runs (persist), so a failed run must leave them be.
OUTPUTS = ("figures", "tables", "curves", "metrics.json", "analysis.json", "summary.md")


def build_report(
    study: Study,
    results_dir: str | Path,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    *,
    log_to_mlflow: bool = True,
) -> dict[str, Any]:
    """Write the report folder (see `pipeline.report`); returns {"analysis", "figures"}.

    The question, metric, mode, target, baseline, claims and sections come from `study.spec`; a section name that
    is not registered fails here, before anything is written. The headline comparisons and the claims are tested
    in one Holm family (`pipeline.report.gate`, docs/statistics.md).
    """
    with frozen_gc():
        return _build(study, results_dir, out_dir, data_dir, log_to_mlflow=log_to_mlflow)


@contextlib.contextmanager
def frozen_gc() -> Iterator[None]:
    """statsmodels' Holm adjustment runs gc.collect() on every call: 0.1-0.4 s each in a process holding torch and
    MLflow, once per claim comparison. Freezing what exists (docs/statistics.md) makes each collection cheap; it
    changes no result."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _build(
    study: Study,
    results_dir: str | Path,
    out_dir: str | Path,
    data_dir: str | Path | None,
    *,
    log_to_mlflow: bool,
) -> dict[str, Any]:
    spec = study.spec
    check_sections(spec.report, str(study.path))
    out = Path(out_dir)
    data = Path(data_dir) if data_dir else None
    runs, sweep = load_results(results_dir, study.name)
    chance = ChanceLevels(data)
    family, plan = Family(ALPHA), None
    if study.sequential:  # the looks the study stage made, replayed: the last one is this report's
        plan = settle_looks(study, runs, sweep, chance, data)
        runs, family = plan.runs, plan.family()
    # Built in a sibling folder, then moved into place output by output: a failure midway leaves the last report.
    where = out.resolve()
    where.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{where.name}.building-", dir=where.parent))
    try:
        figures = work / "figures"
        figures.mkdir()
        (work / "tables").mkdir()  # the sections' long tables (Markdown); a DVC output, so it exists even when empty
        analysis, made = study_analysis(study, runs, sweep, chance, data, work, family, final=True)
        for claim, text in zip(analysis["claims"], settled_texts(analysis["claims"], family, plan)):
            claim["settled"] = text
        if plan is not None:
            analysis["sequential"] = {
                "design": plan.design.record(),
                "looks": [look.record() for look in plan.looks],
                "claims": claim_settlement(analysis["claims"], family, plan),
            }

        write_curve_csvs(runs, spec.metric, work / "curves")
        made += standard_figures(study.name, runs, analysis, figures)
        conf = confusion(runs, analysis, sweep, data)
        analysis["confusion"] = conf
        if "matrix" in conf:
            made.append(confusion_figure(study.name, conf, figures))
        else:
            log.info("no confusion matrix: %s", conf["skipped"])

        analysis["figures"] = [p.relative_to(work).as_posix() for p in map(Path, made) if p.is_relative_to(work)]
        summary = summary_markdown(study.name, spec.question, analysis, sweep)
        (work / "metrics.json").write_text(json.dumps(metrics_file(analysis), indent=2, sort_keys=True) + "\n")
        (work / "analysis.json").write_text(json.dumps(analysis, indent=2, sort_keys=True) + "\n")
        (work / "summary.md").write_text(summary)
        publish(work, out, OUTPUTS)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    made = [out / p.relative_to(work) if p.is_relative_to(work) else p for p in map(Path, made)]
    if log_to_mlflow:
        analysis["logged_to_mlflow"] = log_report(sweep, out, summary, analysis["claims"])
    return {"analysis": analysis, "figures": [str(p) for p in made]}


def study_analysis(
    study: Study,
    runs: list[Run],
    sweep: dict[str, Any],
    chance: ChanceFn,
    data: Path | None,
    work: Path,
    family: Family,
    *,
    final: bool,
) -> tuple[dict[str, Any], list[Path]]:
    """(analysis, the sections' figures) of `runs`: the per-variant statistics, P(A > B), the sections (their figures
    and tables under `work`), then the one family closed and the answer written (`conclude`). Not `final` (an
    earlier look of a sequential study, which decides by the claims alone): no P(A > B), only the sections a claim
    reads."""
    spec = study.spec
    target = spec.target.model_dump() if spec.target else None
    analysis = analyze(runs, spec.metric, spec.mode, target, baseline=spec.baseline, chance=chance)
    pairs = superiority_pairs(study, analysis) if final else []
    analysis["superiority"] = superiority(runs, analysis["metric"], pairs, sweep.get("tracking_uri"))
    analysis.update(
        {
            "study": study.name,
            "question": spec.question,
            **{k: sweep.get(k) for k in ("profile", "seeds", "experiment_id", "parent_run_id", "tracking_uri")},
        }
    )
    made: list[Path] = []
    section_text: list[str] = []
    # an earlier look decides by the claims alone: only the sections a claim reads (`<section>.<quantity>`)
    read = {c.metric.split(".", 1)[0] for c in spec.expect if c.metric and "." in c.metric}
    sections = spec.report if final else [name for name in spec.report if name in read]
    if sections:
        ctx = Context(study.name, runs, sweep, analysis, work, data)
        analysis["extras"] = {}
        for name in sections:
            res = get_section(name)(ctx)
            section_text += res.sentences
            analysis["extras"][name] = res.tables
            made += res.figures
    # After the sections (a claim may read the per-seed values a section computed): the study's one family,
    # the headline pairs and the claims together, then every sentence that names a pair.
    detail = [s for s in (sentence(analysis["superiority"]),) if s] + section_text
    conclude(analysis, spec.expect, runs, chance, detail, family=family)
    return analysis, made


def settle_looks(
    study: Study,
    runs: list[Run],
    sweep: dict[str, Any],
    chance: ChanceFn,
    data: Path | None,
    memo: dict[Any, tuple[dict[str, Any], Family]] | None = None,
) -> Settlement:
    """The study's sequential looks replayed over `runs` (`pipeline.report.settle`): each look analysed as the
    report would, its figures in a scratch folder. `memo` keeps each look's analysis between calls (the study stage
    replays the looks after each one: a look already analysed on the same runs is not analysed again)."""
    memo = {} if memo is None else memo
    with tempfile.TemporaryDirectory(prefix=f"{study.name}-looks-") as scratch:

        def analyse(look_runs: list[Run], family: Family) -> dict[str, Any]:
            key = (family.look, tuple(sorted(r["run_id"] for r in look_runs)))
            if key not in memo:
                work = Path(tempfile.mkdtemp(dir=scratch))
                for sub in ("figures", "tables"):
                    (work / sub).mkdir()
                memo[key] = study_analysis(study, look_runs, sweep, chance, data, work, family, final=False)[0], family
            analysis, done = memo[key]
            family.members, family.closed = done.members, True
            return analysis

        return replay(study, study.variants(), runs, analyse)


def look_decider(study: Study, data_dir: str | Path | None) -> Callable[[list[Run], dict[str, Any]], tuple[int, Any]]:
    """For the study stage of a sequential study: runs so far (and the sweep's tracking_uri, experiment and parent
    run) -> (the look to make next, 0-based; the seeds per variant it needs, or None once the study is settled)."""
    data = Path(data_dir) if data_dir else None
    chance = ChanceLevels(data)
    memo: dict[Any, tuple[dict[str, Any], Family]] = {}

    def decide(runs: list[Run], sweep: dict[str, Any]) -> tuple[int, Any]:
        plan = settle_looks(study, runs, sweep, chance, data, memo)
        return len(plan.looks), plan.wanted

    return decide


def conclude(
    analysis: dict[str, Any],
    claims: Sequence[Claim],
    runs: list[Run],
    chance: ChanceFn | None = None,
    detail: Sequence[str] = (),
    *,
    family: Family | None = None,
) -> dict[str, Any]:
    """Close the study's one family (the headline pairs and the claims' tests, Holm together), keep the inferential
    claims, the arithmetic checks and the family apart in `analysis`, put the headline pairs' results in
    `comparisons`, then write the answer from them: the claims' verdicts, the headline, the detail (`detail`: the
    sentences of P(A > B) and of the sections)."""
    entries, family = evaluate_claims(claims, runs, analysis, chance=chance, alpha=analysis["alpha"], family=family)
    analysis["claims"] = [e for e in entries if e["type"] == "claim"]
    analysis["checks"] = [e for e in entries if e["type"] == "check"]
    analysis["family"] = family.record()
    fill_comparisons(analysis, family)
    analysis["answer_parts"] = answer_parts(analysis, detail)
    analysis["answer"] = answer_text(analysis["answer_parts"])
    return analysis


def superiority_pairs(study: Study, analysis: dict[str, Any]) -> list[tuple[str, str]]:
    """The pairs P(A > B) is given for: the first two of the ranking, and every `better` claim's pairs on the
    headline metric."""
    ranking = [r["variant"] for r in analysis["ranking"]]
    pairs = [(ranking[0], ranking[1])] if len(ranking) > 1 else []
    for c in study.spec.expect:
        if c.kind == "better" and (c.metric or analysis["metric"]) == analysis["metric"]:
            pairs += [(a, b) for a in members(c.a) for b in members(c.b)]
    return pairs


def publish(work: Path, out: Path, names: tuple[str, ...]) -> None:
    """Move each of `names` from the finished `work` folder over its counterpart in `out`, one rename each.

    A file is `os.replace`d (atomic; a DVC cache link in its place is replaced, never written through). A folder
    cannot be renamed over a non-empty one: the old one is renamed aside first, and back if the second rename fails.
    `work` must be on `out`'s file system (a sibling); what was replaced is left in `work` for its owner to delete.
    Each output is replaced atomically, the set of them one after the other (only a rename failing inside one
    folder could leave some new next to some old).
    """
    out.mkdir(parents=True, exist_ok=True)
    replaced = work / ".replaced"
    replaced.mkdir()
    for name in names:
        new, dest = work / name, out / name
        if new.is_file() and not dest.is_dir():
            os.replace(new, dest)
            continue
        old = None
        if dest.exists() or dest.is_symlink():
            old = replaced / name
            os.rename(dest, old)
        try:
            os.rename(new, dest)
        except OSError:
            if old is not None:
                os.rename(old, dest)
            raise


# --------------------------------------------------------------------------- the study stage's results


# What `pipeline.runs` and the report read from each exported run, with the JSON type it needs.
RUN_FIELDS: tuple[tuple[str, type], ...] = (
    ("run_id", str),
    ("status", str),
    ("tags", dict),
    ("params", dict),
    ("final", dict),
    ("history", dict),
)


def _run_problem(run: Any) -> tuple[str | None, str] | None:
    """(key within the run, what is wrong) for a run that is not what `tracking.export_runs` writes, else None."""
    if not isinstance(run, dict):
        return None, f"must be a run (a JSON object), got {json_kind(run)}"
    for key, kind in RUN_FIELDS:
        if key not in run:
            return key, "missing"
        if not isinstance(run[key], kind):
            return key, f"must be {'a string' if kind is str else 'a JSON object'}, got {json_kind(run[key])}"
    for group in ("tags", "params"):  # MLflow's tags and params are strings
        for k, v in run[group].items():
            if not isinstance(v, str):
                return f"{group}.{k}", f"must be a string, got {json_kind(v)}"
    seed = run["tags"].get("seed", "0")
    if not seed.lstrip("-").isdigit():
        return "tags.seed", f"must be a whole number, got {seed[:40]!r}"
    for k, v in run["final"].items():
        if v is not None and not is_number(v):
            return f"final.{k}", f"must be a number, got {json_kind(v)}"
    for k, steps in run["history"].items():
        if not isinstance(steps, list):
            return f"history.{k}", f"must be a list of [step, value] pairs, got {json_kind(steps)}"
        for j, pair in enumerate(steps):
            if not (isinstance(pair, list) and len(pair) == 2 and all(map(is_number, pair))):
                return f"history.{k}.{j}", "must be a [step, value] pair of numbers"
    return None


def load_results(results_dir: str | Path, study: str) -> tuple[list[Run], dict[str, Any]]:
    """`runs.json` and `sweep.json` of `study`'s results folder, checked before the report writes anything.

    A file that is missing, not JSON or not of the shape the study stage writes is a ConfigError naming the
    file (and the key); so are the results of another study (sweep.json's `study`).
    """
    results_dir = Path(results_dir)
    remedy = f"re-run the study stage (dvc repro study@{study})"
    sweep_file, runs_file = results_dir / "sweep.json", results_dir / "runs.json"
    sweep = read_json(sweep_file, remedy)
    if not isinstance(sweep, dict):
        raise ConfigError(f"must be a JSON object, got {json_kind(sweep)}; {remedy}", file=str(sweep_file))
    if not isinstance(sweep.get("study"), str):
        what = "missing" if "study" not in sweep else f"must be a string, got {json_kind(sweep['study'])}"
        raise ConfigError(f"{what}; {remedy}", file=str(sweep_file), key="study")
    if sweep["study"] != study:
        raise ConfigError(
            f"these are the results of study {sweep['study']!r}, not of {study!r}; pass {study}'s results folder",
            file=str(sweep_file),
            key="study",
        )
    for key in ("profile", "experiment_id", "parent_run_id", "tracking_uri"):
        if sweep.get(key) is not None and not isinstance(sweep[key], str):
            raise ConfigError(f"must be a string, got {json_kind(sweep[key])}; {remedy}", file=str(sweep_file), key=key)
    seeds = sweep.get("seeds")
    if seeds is not None and not (isinstance(seeds, list) and all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"must be a list of whole numbers; {remedy}", file=str(sweep_file), key="seeds")

    runs = read_json(runs_file, remedy)
    if not isinstance(runs, list):
        raise ConfigError(f"must be a list of runs, got {json_kind(runs)}; {remedy}", file=str(runs_file))
    for i, run in enumerate(runs):
        problem = _run_problem(run)
        if problem:
            key, what = problem
            raise ConfigError(f"{what}; {remedy}", file=str(runs_file), key=f"{i}.{key}" if key else str(i))
    return runs, sweep
