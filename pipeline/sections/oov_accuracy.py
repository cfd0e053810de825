"""POS-tagging study: test accuracy on all tokens and on out-of-vocabulary tokens, per variant (per seed for the
claims: `oov_accuracy.test_oov_accuracy`, `oov_accuracy.test_accuracy`)."""

from __future__ import annotations

from pipeline import plots
from pipeline.runs import finite_final, ok_runs, per_variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import bar_stats, comparison


@register_section("oov_accuracy")
def oov_accuracy(ctx: Context) -> Result:
    """Test accuracy on all tokens and on out-of-vocabulary tokens, per variant."""
    overall = per_variant(ctx.runs, "test_accuracy")
    oov = per_variant(ctx.runs, "test_oov_accuracy")
    if not oov:
        return Result(["No run reported an out-of-vocabulary accuracy (no OOV words in the test split?)."])
    sentence, table = comparison(oov, "test_oov_accuracy", "max")
    frac = [f for r in ok_runs(ctx.runs) if (f := finite_final(r, "test_oov_fraction")) is not None]
    sentences = [f"On out-of-vocabulary test words ({100 * frac[0]:.1f}% of test tokens): " + sentence]
    if overall:
        s2, t2 = comparison(overall, "test_accuracy", "max")
        sentences.append("On all test tokens: " + s2)
        mean = lambda vals: sum(vals) / len(vals)  # noqa: E731
        sentences.append(
            "Test accuracy, all tokens vs out-of-vocabulary words: "
            + "; ".join(f"{v} {mean(overall[v]):.4f} vs {mean(oov[v]):.4f}" for v in oov if v in overall)
            + "."
        )
        table = {"oov": table, "all": t2}
    table = {**table, "values": {"test_oov_accuracy": oov, "test_accuracy": overall}}
    fig = plots.grouped_bars(
        {"all tokens": bar_stats(overall, "test_accuracy"), "out-of-vocabulary": bar_stats(oov, "test_oov_accuracy")},
        ctx.out_dir / "figures" / "oov_accuracy.png",
        "test accuracy",
        f"{ctx.study}: tagging accuracy, all tokens vs out-of-vocabulary words",
    )
    return Result(sentences, [fig], table)
