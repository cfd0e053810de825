"""Log a built report to the sweep's parent run in MLflow (optional: the files are the report)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline import tracking
from pipeline.trained import store_problem

log = logging.getLogger(__name__)


def log_report(sweep: dict[str, Any], out: Path, summary: str, claims: list[dict[str, Any]] | None = None) -> bool:
    """Log the figures and summary to the sweep's parent run; the summary becomes its description, and each claim's
    verdict and seeds become tags (`claim.<n>.verdict`, `claim.<n>.seeds`), which the MLflow UI sorts and filters by.

    Returns whether it was logged; when the store is missing or unreachable it only warns.
    """
    uri, parent = sweep.get("tracking_uri"), sweep.get("parent_run_id")
    problem = store_problem(uri) or (None if parent else "sweep.json names no parent_run_id")
    if problem:
        log.warning("report not logged to MLflow: %s", problem)
        return False
    try:
        c = tracking.client(uri)
        c.get_run(parent)
        if (out / "figures").is_dir():
            c.log_artifacts(parent, str(out / "figures"), artifact_path="report/figures")
        c.log_artifact(parent, str(out / "summary.md"), artifact_path="report")
        # shown as the run's description in the MLflow UI (tag values are capped at a few thousand chars)
        c.set_tag(parent, "mlflow.note.content", summary[:4900])
        tracking.set_tags(uri, parent, claim_tags(claims or []))
    except Exception as e:  # the files are the report; the store is a convenience
        log.warning("report not logged to MLflow: %s: %s", type(e).__name__, e)
        return False
    return True


def claim_tags(claims: list[dict[str, Any]]) -> dict[str, str]:
    """`claim.<n>.verdict`, `claim.<n>.seeds` (how it was settled) and `claim.<n>.text` for each claim."""
    tags: dict[str, str] = {}
    for c in claims:
        n = c.get("index")
        tags[f"claim.{n}.verdict"] = str(c.get("verdict"))
        tags[f"claim.{n}.seeds"] = str(c.get("settled") or "")[:500]
        tags[f"claim.{n}.text"] = str(c.get("claim"))[:500]
    return tags
