"""The study's one family (pipeline.report.gate): each pair tested once, shown with one p everywhere, and prose that
ranks only what the family found; the checker over crafted text and crafted report folders."""

from __future__ import annotations

import re

import pytest
from test_claims import chance_fn, make_runs

from pipeline.config import Claim
from pipeline.report.analysis import analyze, answer_parts, answer_text, fill_comparisons
from pipeline.report.claims import evaluate_claims
from pipeline.report.gate import Family, disagreements
from pipeline.report.markdown import summary_markdown, table_rows


@pytest.fixture(autouse=True, scope="module")
def frozen_gc():
    import gc

    gc.freeze()
    yield
    gc.unfreeze()


def report(values: dict[str, list[float]], claims: list[dict], **kw) -> tuple[dict, str]:
    """analysis.json and summary.md as build_report makes them, without the folder."""
    runs = make_runs(values, **kw)
    analysis = analyze(runs, "val_accuracy", "max", chance=chance_fn)
    entries, family = evaluate_claims(
        [Claim(claim=c.pop("claim", "c"), **c) for c in claims], runs, analysis, chance=chance_fn
    )
    analysis["claims"] = [e for e in entries if e["type"] == "claim"]
    analysis["checks"] = [e for e in entries if e["type"] == "check"]
    analysis["family"] = family.record()
    fill_comparisons(analysis, family)
    analysis["answer"] = answer_text(answer_parts(analysis))
    analysis["question"] = "Which is best?"  # the spec's words: the checker leaves them out
    return analysis, summary_markdown("demo", analysis["question"], analysis, {})


def test_a_pair_is_tested_once_and_a_claim_orients_it():
    fam = Family(0.05)
    a, b = [0.90, 0.92, 0.94], [0.86, 0.88, 0.90]
    k1 = fam.difference("m", "a", "b", a, b, "headline")
    k2 = fam.difference("m", "b", "a", b, a, "claim 1", alternative="less")  # b below a: the same pair
    fam.close()
    assert k1 == k2 and fam.size == 1
    m = fam.get(k1)
    assert m.used_by == ["headline", "claim 1"] and m.alternative == "less" and (m.a, m.b) == ("b", "a")
    view = fam.view(k1, "a", "b")  # seen from the headline's side: a above b, p one-sided
    assert view.side == 1 and view.p == pytest.approx(0.0352, abs=1e-4) and view.difference == pytest.approx(0.04)
    assert view.p_for("less") == pytest.approx(1 - 0.0352, abs=1e-4)


def test_holm_over_the_whole_family_and_the_opposite_in_it():
    fam = Family(0.05)
    k = fam.difference("m", "a", "b", [0.80, 0.81, 0.82], [0.90, 0.91, 0.92], "claim 1", alternative="greater")
    fam.difference("m", "c", "d", [0.9, 0.92, 0.94], [0.9, 0.91, 0.95], "headline")
    fam.close()
    m = fam.get(k)
    assert m.p > 0.99 and m.p_opposite == pytest.approx(2 * m.opposite.p_value)  # the smaller of 2: ×2
    assert fam.view(k, "a", "b").side == -1  # contradicted in the same family


def test_one_pair_has_one_p_in_the_answer_the_table_and_the_claims():
    values = {"a": [0.90, 0.92, 0.94], "b": [0.86, 0.88, 0.90], "c": [0.70, 0.72, 0.74]}
    analysis, summary = report(values, [{"claim": "a beats b", "kind": "better", "a": "a", "b": "b"}])
    pair = next(p for p in analysis["comparisons"]["pairs"] if {p["a"], p["b"]} == {"a", "b"})
    shown = f"{pair['p_value']:.2g}"
    assert f"p={shown}" in analysis["answer"] and f"p={shown}" in analysis["claims"][0]["reason"]
    row = next(r for r in table_rows(analysis) if r["variant"] == "b")
    assert row["p vs 1st"].startswith(f"{pair['p_value']:.3g}")
    ps = {f"{float(x):.2g}" for x in re.findall(r"p=(0\.\d+)", summary.split("| rank |")[0]) if "a" in summary}
    assert shown in ps
    assert [t["used_by"] for t in analysis["family"]["tests"] if {t["a"], t["b"]} == {"a", "b"}] == [
        ["headline", "claim 1"]
    ]


def test_no_ranking_word_for_a_pair_the_family_cannot_tell_apart():
    values = {"a": [0.90, 0.92, 0.94], "b": [0.89, 0.91, 0.93], "c": [0.88, 0.90, 0.92]}
    analysis, summary = report(values, [])
    answer = analysis["answer"]
    for word in ("ranks first", "ahead of", "best", "is better than", "is worse than"):
        assert word not in answer.replace("best-validation", "").replace("best val_accuracy", ""), word
    assert "cannot be told apart with 3 seeds" in answer and "seeds per variant" in answer
    assert "Welch t-tests, Holm-adjusted over the study's 3 tests" in answer
    assert disagreements(analysis, summary) == []
    # a clear winner may be named, with its test
    clear, text = report({"a": [0.90, 0.91, 0.92], "b": [0.70, 0.71, 0.72]}, [])
    assert "a ranks first" in clear["answer"] and "ahead of b" in clear["answer"]
    assert disagreements(clear, text) == []


def test_the_answer_starts_with_the_claims_then_the_headline():
    values = {"a": [0.90, 0.91, 0.92], "b": [0.70, 0.71, 0.72]}
    claims = [
        {"claim": "a beats b", "kind": "better", "a": "a", "b": "b"},
        {
            "claim": "twice",
            "kind": "ratio",
            "a": "a",
            "b": "b",
            "metric": "test_accuracy",
            "value": 1.0,
            "tolerance": 0.5,
        },
    ]
    analysis, _ = report(values, claims)
    lines = analysis["answer"].splitlines()
    assert lines[0].startswith("Claims (1, tested in the study's family: 1 confirmed, 0 contradicted")
    assert lines[1].startswith("- confirmed: a beats b (one-sided Welch, Holm-adjusted p")
    assert lines[2] == "Arithmetic checks, not inference: 1 of 1 hold."
    assert lines[4].startswith("Measured on test_accuracy")


def test_the_checker_finds_unsupported_rankings():
    values = {"a": [0.90, 0.92, 0.94], "b": [0.89, 0.91, 0.93], "c": [0.70, 0.71, 0.72]}
    analysis, summary = report(values, [])
    assert disagreements(analysis, summary) == []
    bad = summary + "\nAt equal size a is best. a is better than b (p=0.9). Compared with b, a and c raise accuracy.\n"
    found = disagreements(analysis, bad)
    assert len(found) == 3, found
    assert found[0].startswith("ranks without naming a tested pair (best)")
    assert "'better than' for a vs b" in found[1] and "'raise' for b vs a, not significant" in found[2]
    # a significant pair may be ranked, in either order of naming
    assert (
        disagreements(analysis, summary + "\na is better than c (p<0.001). Compared with c, a and b raise it.\n") == []
    )


def test_the_reports_check_fails_on_a_report_that_outruns_its_tests(tmp_path, capsys):
    """`python -m pipeline.report.gate reports` (run on real reports by test_e2e_dvc): one line per bad sentence, exit
    1; exit 0 on good reports; exit 1 on a folder without reports (nothing checked is no pass)."""
    import json

    from pipeline.report.gate import check_reports

    values = {"a": [0.90, 0.92, 0.94], "b": [0.89, 0.91, 0.93]}
    analysis, summary = report(values, [])
    for name, text in (("good", summary), ("bad", summary + "\nSo a is best, ahead of b.\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "analysis.json").write_text(json.dumps(analysis))
        (tmp_path / name / "summary.md").write_text(text)
    assert check_reports(str(tmp_path)) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith(f"{tmp_path / 'bad' / 'summary.md'}: ") and "a vs b" in out[0]
    assert out[1] == "2 reports checked, 1 sentences rank or compare without their study's tests"
    (tmp_path / "bad" / "summary.md").unlink()
    assert check_reports(str(tmp_path)) == 0
    assert check_reports(str(tmp_path / "bad")) == 1
