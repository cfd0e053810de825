"""Language-model study: the report's perplexity against the n-gram order N (one line per embedding size), by
embedding size at each N, and the LSTM's, each with its parameter count: the LSTM and the n-gram models differ in
size, and every sentence that sets them side by side says so. Which variants differ is the study's one test
family's to say."""

from __future__ import annotations

from typing import Any

from pipeline import plots
from pipeline.runs import by_variant, finite_final, int_param, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, decided_by, describe, stat, which


def size_sentence(table: dict[str, dict[str, Any]]) -> str | None:
    """The other models' parameter counts beside the n-gram models' range, when both families are there."""
    ngram = [r["n_params"] for r in table.values() if r["family"] == "ngram_lm" and r["n_params"]]
    other = {v: r["n_params"] for v, r in table.items() if r["family"] != "ngram_lm" and r["n_params"]}
    if not ngram or not other:
        return None
    lo, hi = min(ngram), max(ngram)
    text = ", ".join(f"{v} has {n:,.0f} parameters" for v, n in other.items())
    text += f", the n-gram models {lo:,.0f}" + (f" to {hi:,.0f}" if hi > lo else "")
    if all(lo <= n <= hi for n in other.values()):
        return f"Sizes: {text}."
    return f"Sizes differ: {text}; a difference between them here is not one at matched parameters."


@register_section("lm_perplexity")
def lm_perplexity(ctx: Context) -> Result:
    """Perplexity against the n-gram order N (one line per embedding size), the LSTM as a band, with sizes."""
    metric = ctx.analysis["metric"]
    lines: dict[str, list[tuple[float, list[float]]]] = {}
    flat: dict[str, list[float]] = {}
    table: dict[str, Any] = {}
    for variant, runs in by_variant(ok_runs(ctx.runs)).items():
        vals = [x for r in runs if (x := finite_final(r, metric)) is not None]
        if not vals:
            continue
        family = runs[0]["params"].get("model.name")
        n, dim = int_param(runs[0], "model.options.n"), int_param(runs[0], "model.options.embedding_dim")
        table[variant] = {
            "family": family,
            "n": n,
            "embedding_dim": dim,
            "n_params": finite_final(runs[0], "n_params"),
            "values": vals,
        }
        if family == "ngram_lm" and n is not None:
            lines.setdefault(f"n-gram, embedding {dim}", []).append((n, vals))
        else:
            flat[variant] = vals
    if not table:
        return Result([f"No language-model run reported {metric}."])
    sentences = []
    for label, points in lines.items():
        if len(points) > 1:
            points.sort()
            sentences.append(
                f"By N ({label}), {which(metric)} ({DESCRIBED}): "
                + ", ".join(f"N={n} {describe(stat(v, metric), 2)}" for n, v in points)
                + "."
            )
    by_dim: dict[int, list[tuple[int, list[float]]]] = {}
    for row in table.values():
        if row["family"] == "ngram_lm":
            by_dim.setdefault(row["n"], []).append((row["embedding_dim"], row["values"]))
    for n, points in sorted(by_dim.items()):
        if len(points) > 1:
            points.sort()
            sentences.append(
                f"At N={n}, by embedding size: "
                + ", ".join(f"{d}: {describe(stat(v, metric), 2)}" for d, v in points)
                + "."
            )
    if flat:
        sentences.append(
            "Without a fixed window, "
            + ", ".join(f"{v} {describe(stat(vals, metric), 2)}" for v, vals in flat.items())
            + "."
        )
    sentences += [s for s in (size_sentence(table), decided_by(ctx, metric)) if s]
    fig = plots.perplexity_by_order(
        {k: [(x, stat(v, metric)) for x, v in pts] for k, pts in lines.items()},
        {k: stat(v, metric) for k, v in flat.items()},
        ctx.out_dir / "figures" / "perplexity_by_n.png",
        f"{ctx.study}: {which(metric)} by n-gram order",
        ylabel=metric,
    )
    return Result(sentences, [fig], {"perplexity": table})
