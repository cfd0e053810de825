"""Language-model study: validation perplexity against the n-gram order N (one line per embedding size), by
embedding size at each N, and the LSTM against the best n-gram model."""

from __future__ import annotations

from typing import Any

from pipeline import plots
from pipeline.runs import by_variant, finite_final, int_param, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import stat


@register_section("lm_perplexity")
def lm_perplexity(ctx: Context) -> Result:
    """Validation perplexity against the n-gram order N (one line per embedding size), the LSTM as a band."""
    metric = "val_perplexity"
    lines: dict[str, list[tuple[float, list[float]]]] = {}
    flat: dict[str, list[float]] = {}
    table: dict[str, Any] = {}
    for variant, runs in by_variant(ok_runs(ctx.runs)).items():
        # the value at the last epoch, as the study's main table reads it
        vals = [x for r in runs if (x := finite_final(r, metric)) is not None]
        if not vals:
            continue
        family = runs[0]["params"].get("model.name")
        n, dim = int_param(runs[0], "model.options.n"), int_param(runs[0], "model.options.embedding_dim")
        table[variant] = {"family": family, "n": n, "embedding_dim": dim, "values": vals}
        if family == "ngram_lm" and n is not None:
            lines.setdefault(f"n-gram, embedding {dim}", []).append((n, vals))
        else:
            flat[variant] = vals
    if not table:
        return Result(["No language-model run finished."])
    sentences = []
    mean = lambda vals: sum(vals) / len(vals)  # noqa: E731
    for label, points in lines.items():
        if len(points) > 1:
            points.sort()
            sentences.append(
                f"Validation perplexity by N ({label}): " + ", ".join(f"N={n} {mean(v):.3g}" for n, v in points) + "."
            )
    by_dim: dict[int, list[tuple[int, list[float]]]] = {}
    for row in table.values():
        if row["family"] == "ngram_lm":
            by_dim.setdefault(row["n"], []).append((row["embedding_dim"], row["values"]))
    for n, points in sorted(by_dim.items()):
        if len(points) > 1:
            points.sort()
            sentences.append(
                f"At N={n}, by embedding size: " + ", ".join(f"{d}: {mean(v):.3g}" for d, v in points) + "."
            )
    ngram_best = min(((mean(r["values"]), v) for v, r in table.items() if r["family"] == "ngram_lm"), default=None)
    for variant, vals in flat.items():
        if ngram_best:
            better = "below" if mean(vals) < ngram_best[0] else "above"
            sentences.append(
                f"{variant} reaches {mean(vals):.3g}, {better} the best n-gram model ({ngram_best[1]}, "
                f"{ngram_best[0]:.3g})."
            )
    fig = plots.perplexity_by_order(
        {k: [(x, stat(v, metric)) for x, v in pts] for k, pts in lines.items()},
        {k: stat(v, metric) for k, v in flat.items()},
        ctx.out_dir / "figures" / "perplexity_by_n.png",
        f"{ctx.study}: validation perplexity (last epoch) by n-gram order",
    )
    return Result(sentences, [fig], {"perplexity": table})
