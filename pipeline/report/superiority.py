"""P(A > B) over seeds and test examples (Bouthillier et al., MLSys 2021) from each run's per-example test
correctness: the `test_correct.npy` artifact (1-D, 0/1 per test example, from the best-validation checkpoint)
that classification trials log to MLflow.

Given for the answer's top pair and every `better` claim's pairs, when the headline metric is an accuracy and
every run of both variants has the artifact; otherwise `{"skipped": why}` (in analysis.json only).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import honest_stats as hs
from pipeline import runs as rn
from pipeline import tracking
from pipeline.runs import Run
from pipeline.trained import quiet_downloads, store_problem

log = logging.getLogger(__name__)

ARTIFACT = "test_correct.npy"


def download_test_correct(tracking_uri: str | None, run_ids: Sequence[str]) -> tuple[dict[str, np.ndarray], str]:
    """Each run's per-example test correctness, or ({}, why not): no store, a run without the artifact, or a file
    that is not a flat 0/1 array."""
    problem = store_problem(tracking_uri)
    if problem:
        return {}, problem
    assert tracking_uri is not None
    out: dict[str, np.ndarray] = {}
    try:
        c = tracking.client(tracking_uri)
        with tempfile.TemporaryDirectory() as d, quiet_downloads():
            for run_id in run_ids:
                if ARTIFACT not in {a.path for a in c.list_artifacts(run_id)}:
                    return {}, f"run {run_id} has no {ARTIFACT} artifact (logged by trials of this version on)"
                path = c.download_artifacts(run_id, ARTIFACT, str(Path(d) / run_id))
                x = np.load(path, allow_pickle=False)
                if x.ndim != 1 or x.size == 0 or not np.isin(x, (0, 1)).all():
                    return {}, f"run {run_id}: {ARTIFACT} is not a flat array of 0/1 (shape {x.shape})"
                out[run_id] = x.astype(float)
    except Exception as e:  # an unreachable or damaged store: the report goes on without P(A > B)
        log.warning("per-example test correctness not read: %s: %s", type(e).__name__, str(e)[:200])
        return {}, f"per-example test correctness not readable ({type(e).__name__})"
    return out, ""


def superiority(
    runs: list[Run], metric: str, pairs: Iterable[tuple[str, str]], tracking_uri: str | None
) -> dict[str, Any]:
    """{"pairs": [{a, b, p_a_better, ...}]} for each (a, b) whose runs all have per-example correctness, else
    {"skipped": why}. `metric` is the headline metric: per-example correctness measures an accuracy only."""
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return {"skipped": "no pair to compare"}
    if not metric.endswith("accuracy"):
        return {"skipped": f"per-example correctness measures accuracy, not the headline metric {metric}"}
    by_v = {v: rn.ok_runs(rs) for v, rs in rn.by_variant(runs).items()}
    wanted = [r["run_id"] for v in dict.fromkeys(x for p in pairs for x in p) for r in by_v.get(v, [])]
    arrays, why = download_test_correct(tracking_uri, wanted)
    if why:
        return {"skipped": why}
    out = []
    for a, b in pairs:
        xa = [arrays[r["run_id"]] for r in by_v.get(a, [])]
        xb = [arrays[r["run_id"]] for r in by_v.get(b, [])]
        if not xa or not xb:
            continue
        if len({x.size for x in xa + xb}) != 1:
            return {"skipped": f"{a} and {b}: runs were tested on different numbers of examples"}
        s = hs.p_superiority(np.stack(xa), np.stack(xb))
        out.append({"a": a, "b": b, **s.as_dict()})
    return {"pairs": out} if out else {"skipped": "no finished runs for the pairs"}


def sentence(sup: dict[str, Any]) -> str:
    """The answer's sentence on the top pair's P(A > B); empty when it was skipped."""
    if not sup.get("pairs"):
        return ""
    p = sup["pairs"][0]
    text = (
        f"P({p['a']}'s mean test accuracy > {p['b']}'s), resampling seeds and test examples paired by example "
        f"(Bouthillier et al. 2021): {p['p_a_better']:.2f}; difference {p['difference']:+.4f} "
        f"[{p['diff_low']:+.4f}, {p['diff_high']:+.4f}] over {p['n_examples']} examples"
    )
    return text + (f" ({p['note']})." if p.get("note") else ".")
