"""POS-tagging study: test accuracy on all tokens and on out-of-vocabulary tokens, per variant (per seed for the
claims: `oov_accuracy.test_oov_accuracy`, `oov_accuracy.test_accuracy`). It describes; the claims compare."""

from __future__ import annotations

from pipeline import plots
from pipeline.runs import finite_final, ok_runs, per_variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, bar_stats, decided_by, describe, sizes


@register_section("oov_accuracy")
def oov_accuracy(ctx: Context) -> Result:
    """Test accuracy on all tokens and on out-of-vocabulary tokens, per variant."""
    overall = per_variant(ctx.runs, "test_accuracy")
    oov = per_variant(ctx.runs, "test_oov_accuracy")
    if not oov:
        return Result(["No run reported an out-of-vocabulary accuracy (no OOV words in the test split?)."])
    tables = {"oov": bar_stats(oov, "test_oov_accuracy"), "all": bar_stats(overall, "test_accuracy")}
    frac = [f for r in ok_runs(ctx.runs) if (f := finite_final(r, "test_oov_fraction")) is not None]
    where = f" ({100 * frac[0]:.1f}% of test tokens)" if frac else ""
    sentences = [
        f"Test accuracy of each run's best-validation checkpoint ({DESCRIBED}), on out-of-vocabulary words{where} "
        "and on all tokens: "
        + "; ".join(
            f"{v} {describe(tables['oov'][v], 4)} and {describe(tables['all'][v], 4) if v in overall else 'n/a'}"
            for v in oov
        )
        + ".",
        *[s for s in (sizes(ctx), decided_by(ctx, "test_oov_accuracy", "test_accuracy")) if s],
    ]
    fig = plots.grouped_bars(
        {"all tokens": tables["all"], "out-of-vocabulary": tables["oov"]},
        ctx.out_dir / "figures" / "oov_accuracy.png",
        "test accuracy",
        f"{ctx.study}: tagging accuracy, all tokens vs out-of-vocabulary words",
    )
    return Result(sentences, [fig], {**tables, "values": {"test_oov_accuracy": oov, "test_accuracy": overall}})
