"""`site/index.html`: one self-contained page with every study's claims, question, answer, table and figures.

At the top, one table of every study's claims with their verdicts; then a section per study.

Self-contained: the figures are embedded as base64 data URIs and there is no script, no external style
sheet and no remote request, so the page opens from a file, an e-mail or a CI artifact. Each variant
links to its runs in the MLflow UI: `<ui>/#/experiments/<experiment_id>/runs/<run_id>`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.jsonfile import is_int, is_number, json_kind, read_json
from pipeline.report.markdown import TABLE_METRICS, VERDICTS, claim_rows, how_measured, table_rows, verdict_counts

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"
MLFLOW_UI_ENV = "PIPELINE_MLFLOW_UI"

# Captions for the report's standard figures; other figures (report extras) are captioned by file name.
CAPTIONS = {
    "curve_": "{rest} per epoch (per-epoch curve, not the checkpoint): mean over seeds, band ±1 SD (their spread)",
    "final_": "{rest} of each run's best-validation checkpoint per variant: mean, 95% interval, one dot per seed",
    "grad_norm_layers": "per-layer gradient norm after the first epoch",
    "confusion_best": "confusion matrix of the best run on the test split",
}

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222;
       overflow-wrap: anywhere; }
h1 { margin-bottom: 0.2em; } h2 { border-top: 2px solid #ddd; padding-top: 1em; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; }
.question { font-size: 1.15em; font-style: italic; }
.answer { background: #f4f8ff; border-left: 4px solid #3b7dd8; padding: 0.6em 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; overflow-wrap: normal; }
th { background: #f0f0f0; } td.variant, th.variant { text-align: left; font-weight: 600; }
tr.best td { background: #fff6e0; }
a.failed { color: #b00; text-decoration: line-through; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(460px, 100%), 1fr)); gap: 1em; }
figure { margin: 0; border: 1px solid #eee; padding: 0.5em; min-width: 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: 0.85em; }
nav li { margin: 0.2em 0; }
/* a wide table scrolls inside its box; the page itself never gets wider than the window */
.scroll { overflow-x: auto; max-width: 100%; }
table.claims td, table.claims th { text-align: left; vertical-align: top; }
table.claims td.text { white-space: normal; min-width: 14em; }
table.claims td.reason { white-space: normal; min-width: 24em; color: #444; }
td.verdict { font-weight: 600; text-align: center; }
td.confirmed { background: #e3f4e1; color: #1d6b1a; }
td.contradicted { background: #fbe3e1; color: #a11d12; }
td.inconclusive { background: #f1f1f1; color: #555; }
"""


def mlflow_ui_base(explicit: str | None = None, tracking_uri: str | None = None) -> str:
    """Where the MLflow UI is: the explicit value, else $PIPELINE_MLFLOW_UI, else the tracking server
    itself when runs were logged to one over HTTP, else a local `mlflow ui`."""
    base = explicit or os.environ.get(MLFLOW_UI_ENV)
    if not base and tracking_uri and tracking_uri.startswith(("http://", "https://")):
        base = tracking_uri
    return (base or DEFAULT_MLFLOW_UI).rstrip("/")


# MLflow 3.17's UI shows the GenAI or the model-training view by its own switch (this URL parameter, else GenAI),
# whatever the experiment's mlflow.experimentKind tag says: the links ask for the training view.
TRAINING_VIEW = "workflowType=machine_learning"


def run_url(ui_base: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_base}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def experiment_url(ui_base: str, experiment_id: str) -> str:
    return f"{ui_base}/#/experiments/{experiment_id}?{TRAINING_VIEW}"


def models_url(ui_base: str, experiment_id: str) -> str:
    """The experiment's Models tab: one logged model per trial, named like its run."""
    return f"{ui_base}/#/experiments/{experiment_id}/models?{TRAINING_VIEW}"


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _caption(path: Path) -> str:
    stem = path.stem
    for prefix, text in CAPTIONS.items():
        if stem.startswith(prefix):
            return text.format(rest=stem[len(prefix) :])
    if "_vs_" in stem:
        y, x = stem.split("_vs_", 1)
        return f"{y} against {x} (mean and 95% interval of the mean over seeds)"
    return stem.replace("_", " ")


def load_report(report_dir: Path) -> dict[str, Any]:
    """A report's analysis.json, checked to hold what this page and `pipeline show` read from it."""
    path = Path(report_dir) / "analysis.json"
    remedy = f"run its report stage (dvc repro report@{Path(report_dir).name})"
    if not path.is_file():
        raise ConfigError(f"report missing; {remedy}", file=str(path))
    analysis = read_json(path, "re-" + remedy)
    problem = report_problem(analysis)
    if problem:
        key, what = problem
        raise ConfigError(f"{what}; re-{remedy}", file=str(path), key=key)
    return analysis


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_claim(c: Any) -> bool:
    return isinstance(c, dict) and all(_is_str(c.get(k)) for k in ("claim", "verdict", "reason"))


def _is_run_ref(ref: Any) -> bool:
    return isinstance(ref, dict) and is_int(ref.get("seed")) and all(_is_str(ref.get(k)) for k in ("run_id", "status"))


# (key, test, what the value must be, required) for what the page, the table and `pipeline show` read.
Check = tuple[str, Callable[[Any], bool], str, bool]
REPORT_CHECKS: tuple[Check, ...] = (
    ("answer", _is_str, "a string", True),
    ("metric", _is_str, "a string", True),
    ("mode", _is_str, "a string", True),
    ("variants", lambda v: isinstance(v, dict), "a JSON object", True),
    ("alpha", is_number, "a number", False),
    ("figures", lambda v: isinstance(v, list) and all(map(_is_str, v)), "a list of file names", False),
    ("confusion", lambda v: v is None or isinstance(v, dict), "a JSON object", False),
    ("claims", lambda v: isinstance(v, list) and all(map(_is_claim, v)), "a list of {claim, verdict, reason}", False),
    ("checks", lambda v: isinstance(v, list) and all(map(_is_claim, v)), "a list of {claim, verdict, reason}", False),
    *(
        (k, lambda v: v is None or _is_str(v), "a string", False)
        for k in ("study", "question", "test", "tracking_uri", "profile", "experiment_id", "parent_run_id")
    ),
)
VARIANT_CHECKS: tuple[Check, ...] = (
    ("runs", is_int, "a whole number", True),
    ("finished", is_int, "a whole number", True),
    ("diverged", is_int, "a whole number", True),
    ("rank", is_int, "a whole number", False),
    ("p_vs_anchor", lambda v: v is None or is_number(v), "a number", False),
    ("run_ids", lambda v: isinstance(v, list), "a list", False),
)
CONFUSION_CHECKS: tuple[Check, ...] = (  # when it has a matrix (it has "accuracy")
    ("accuracy", is_number, "a number", True),
    ("n", is_int, "a whole number", True),
    ("seed", is_int, "a whole number", True),
    ("variant", _is_str, "a string", True),
    ("run_id", _is_str, "a string", True),
)


def _first_problem(node: dict[str, Any], at: str, checks: tuple[Check, ...]) -> tuple[str, str] | None:
    for key, test, wanted, required in checks:
        if key not in node:
            if required:
                return at + key, "missing"
        elif not test(node[key]):
            return at + key, f"must be {wanted}, got {json_kind(node[key])}"
    return None


def report_problem(a: Any) -> tuple[str | None, str] | None:
    """(key, what is wrong) when an analysis.json lacks what the page, the table or `pipeline show` read, else None.

    analysis.json is the report stage's own output; this catches a truncated or hand-edited one, so that reading
    it fails with one line instead of a KeyError deep in the page.
    """
    if not isinstance(a, dict):
        return None, f"must be a JSON object, got {json_kind(a)}"
    if problem := _first_problem(a, "", REPORT_CHECKS):
        return problem
    for variant, row in a["variants"].items():
        if not isinstance(row, dict):
            return f"variants.{variant}", f"must be a JSON object, got {json_kind(row)}"
        if problem := _first_problem(row, f"variants.{variant}.", VARIANT_CHECKS):
            return problem
        for col in sorted({a["metric"], *TABLE_METRICS} & row.keys()):
            if problem := _stat_problem(row[col]):
                return f"variants.{variant}.{col}", problem
        for i, ref in enumerate(row.get("run_ids", [])):
            if not _is_run_ref(ref):
                return (
                    f"variants.{variant}.run_ids.{i}",
                    "must be a JSON object of seed (a whole number), run_id, status",
                )
    conf = a.get("confusion") or {}
    return _first_problem(conf, "confusion.", CONFUSION_CHECKS) if "accuracy" in conf else None


def _stat_problem(stat: Any) -> str | None:
    """What is wrong with a summarized metric as the table prints it (`mean ± std [ci_low, ci_high]`), else None."""
    if stat is None:
        return None
    if not isinstance(stat, dict):
        return f"must be a JSON object, got {json_kind(stat)}"
    if "mean" not in stat:
        return None  # a variant without a finished run: printed as "–"
    if not (is_number(stat["mean"]) and is_number(stat.get("std"))):
        return "must have a numeric mean and std"
    if stat.get("ci_low") is not None and not (is_number(stat["ci_low"]) and is_number(stat.get("ci_high"))):
        return "must have numeric ci_low and ci_high"
    return None


def _figures(report_dir: Path, analysis: dict[str, Any]) -> list[Path]:
    """The report's figures in the order it made them, then any other PNG in its figures folder."""
    listed = [report_dir / f for f in analysis.get("figures", [])]
    others = sorted(p for p in (report_dir / "figures").glob("*.png") if p not in listed)
    return [p for p in listed + others if p.is_file()]


def _run_links(row: dict[str, Any], ui: str, experiment_id: str | None) -> str:
    if not experiment_id:
        return ""
    links = []
    for r in sorted(row.get("run_ids", []), key=lambda r: r["seed"]):
        cls = "" if r["status"] == "FINISHED" else ' class="failed"'
        title = f"seed {r['seed']}: {r['status']}"
        links.append(
            f'<a href="{escape(run_url(ui, experiment_id, r["run_id"]))}"{cls} title="{escape(title)}">s{r["seed"]}</a>'
        )
    return " ".join(links)


def study_section(report_dir: Path, ui_base: str | None = None) -> str:
    report_dir = Path(report_dir)
    a = load_report(report_dir)
    study = a.get("study") or report_dir.name
    ui = mlflow_ui_base(ui_base, a.get("tracking_uri"))
    exp = a.get("experiment_id")
    rows = table_rows(a)
    header = list(rows[0]) if rows else []
    out = [f'<section id="{escape(study)}">', f"<h2>{escape(study)}</h2>"]
    out.append(f'<p class="question">{escape(a.get("question") or "")}</p>')
    out.append(f'<p class="answer"><b>Answer (generated from the runs).</b> {escape(a["answer"])}</p>')
    meta = [f"metric <code>{escape(a['metric'])}</code> ({escape(a['mode'])})"]
    if a.get("study_metric") and a["study_metric"] != a["metric"]:
        meta[0] += f" of the best-validation checkpoint (by <code>{escape(a['study_metric'])}</code>)"
    if a.get("profile"):
        meta.append(f"profile <code>{escape(str(a['profile']))}</code>")
    if a.get("seeds") is not None:
        meta.append(f"seeds {escape(str(a['seeds']))}")
    if exp:
        meta.append(f'<a href="{escape(experiment_url(ui, exp))}">MLflow experiment {escape(str(exp))}</a>')
        meta.append(f'<a href="{escape(models_url(ui, exp))}">its logged models</a>')
        if a.get("parent_run_id"):
            meta.append(f'<a href="{escape(run_url(ui, exp, a["parent_run_id"]))}">sweep parent run</a>')
    out.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if rows:
        cells = "".join(f'<th class="{"variant" if h == "variant" else ""}">{escape(h)}</th>' for h in header)
        out += ['<div class="scroll"><table>', f"<thead><tr>{cells}<th>MLflow runs</th></tr></thead>", "<tbody>"]
        for r in rows:
            v = r["variant"]
            tds = "".join(f'<td class="{"variant" if h == "variant" else ""}">{escape(r[h])}</td>' for h in header)
            links = _run_links(a["variants"][v], ui, exp)
            out.append(f'<tr class="{"best" if r["rank"] == "1" else ""}">{tds}<td>{links}</td></tr>')
        out += ["</tbody>", "</table></div>"]
        out.append(f'<p class="meta">{escape(how_measured(a))}</p>')
    conf = a.get("confusion") or {}
    if "accuracy" in conf:
        out.append(
            f'<p class="meta">Best run ({escape(conf["variant"])}, seed {conf["seed"]}) re-evaluated on the test '
            f"split: accuracy {conf['accuracy']:.4g} on {conf['n']} samples.</p>"
        )
    figs = _figures(report_dir, a)
    if figs:
        out.append('<div class="figures">')
        for p in figs:
            cap = escape(_caption(p))
            out.append(f'<figure><img src="{data_uri(p)}" alt="{cap}"><figcaption>{cap}</figcaption></figure>')
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def claims_table(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Every study's inferential claims with their verdicts (study, claim, verdict, reason), verdicts coloured and
    counted; then, apart and counted apart, the arithmetic checks (identities of the built models)."""
    rows = [(study, c) for study, a in reports for c in claim_rows(a)]
    checks = [(study, c) for study, a in reports for c in claim_rows(a, "checks")]
    out = ['<section id="all-claims">', "<h2>Claims</h2>"]
    if not rows and not checks:
        out += ['<p class="meta">No study declares claims (<code>expect:</code> in its spec).</p>', "</section>"]
        return out
    out.append(
        f"<p class=\"meta\">{len(rows)} inferential claims from the studies' specs, each tested in its study's one "
        f"Holm family: {verdict_counts([c for _, c in rows])}. Apart from them, {len(checks)} arithmetic checks "
        f"(not inference): {sum(c['verdict'] == 'confirmed' for _, c in checks)} hold.</p>"
    )
    out += _verdict_table(rows, "claim", seeds=True)
    if checks:
        out += ["<h3>Arithmetic checks</h3>", *_verdict_table(checks, "check")]
    out.append("</section>")
    return out


def _verdict_table(rows: list[tuple[str, dict[str, str]]], what: str, seeds: bool = False) -> list[str]:
    """The verdicts; with `seeds`, a column of the seeds each claim used (and, with sequential looks, how it was
    settled)."""
    head = "<th>seeds</th>" if seeds else ""
    out = [
        f'<div class="scroll"><table class="claims {what}s">',
        f"<thead><tr><th>study</th><th>{what}</th><th>verdict</th>{head}<th>reason</th></tr></thead>",
        "<tbody>",
    ]
    for study, c in rows:
        verdict = c["verdict"] if c["verdict"] in VERDICTS else "inconclusive"
        cell = f'<td class="settled">{escape(c.get("settled", ""))}</td>' if seeds else ""
        out.append(
            f'<tr><td><a href="#{escape(study)}">{escape(study)}</a></td><td class="text">{escape(c["claim"])}</td>'
            f'<td class="verdict {verdict}">{escape(c["verdict"])}</td>{cell}'
            f'<td class="reason">{escape(c["reason"])}</td></tr>'
        )
    return [*out, "</tbody>", "</table></div>"]


def render_index(report_dirs: Sequence[Path], ui_base: str | None = None, title: str = "Studies") -> str:
    """The whole page for the given report folders, in order. Deterministic: same reports, same bytes."""
    toc, sections, loaded = [], [], []
    for d in map(Path, report_dirs):
        a = load_report(d)
        name = a.get("study") or d.name
        loaded.append((name, a))
        toc.append(f'<li><a href="#{escape(name)}">{escape(name)}</a>: {escape(a.get("question") or "")}</li>')
        sections.append(study_section(d, ui_base))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            # an empty icon: otherwise the browser asks for /favicon.ico and logs a failed request
            '<link rel="icon" href="data:,">',
            f"<title>{escape(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(sections)} studies, built from reports/&lt;study&gt;/analysis.json</p>',
            *claims_table(loaded),
            "<nav><ul>",
            *toc,
            "</ul></nav>",
            *sections,
            "</body>",
            "</html>",
            "",
        ]
    )
