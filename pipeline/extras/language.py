"""Report sections of the language studies: perplexity by context and width, embedding neighbours,
out-of-vocabulary tagging accuracy, and sentiment F1 with and without negation."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from pipeline import plots
from pipeline.data.text import is_negator
from pipeline.extras import ExtraContext, ExtraResult, register_extra
from pipeline.extras.trained import (
    bar_stats,
    by_variant,
    comparison,
    final,
    log_artifact,
    ok_runs,
    per_variant,
    ranked_variants,
    single_thread,
    trained,
)

# --------------------------------------------------------------------------- language model


def _int_param(run: dict[str, Any], key: str) -> int | None:
    v = run["params"].get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _last(run: dict[str, Any], key: str) -> float | None:
    """The value at the last epoch, as the study's main table reads it."""
    series = [v for _, v in run["history"].get(key, [])]
    return series[-1] if series and math.isfinite(series[-1]) else None


@register_extra("lm_perplexity")
def lm_perplexity(ctx: ExtraContext) -> ExtraResult:
    """Validation perplexity against the n-gram order N (one line per embedding size), the LSTM as a band."""
    metric = "val_perplexity"
    lines: dict[str, list[tuple[float, list[float]]]] = {}
    flat: dict[str, list[float]] = {}
    table: dict[str, Any] = {}
    for variant, runs in by_variant(ok_runs(ctx)).items():
        vals = [x for r in runs if (x := _last(r, metric)) is not None]
        if not vals:
            continue
        family = runs[0]["params"].get("model.name")
        n, dim = _int_param(runs[0], "model.options.n"), _int_param(runs[0], "model.options.embedding_dim")
        table[variant] = {"family": family, "n": n, "embedding_dim": dim, "values": vals}
        if family == "ngram_lm" and n is not None:
            lines.setdefault(f"n-gram, embedding {dim}", []).append((n, vals))
        else:
            flat[variant] = vals
    if not table:
        return ExtraResult(["No language-model run finished."])
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
        {k: [(x, v) for x, v in pts] for k, pts in lines.items()},
        flat,
        ctx.out_dir / "figures" / "perplexity_by_n.png",
        f"{ctx.study}: validation perplexity (last epoch) by n-gram order",
    )
    return ExtraResult(sentences, [fig], {"perplexity": table})


PROBES = ("dog", "good", "bad", "loves", "quickly", "not", "king", "love", "the")


def _probes(vocab: list[str], counts_order: list[str], k: int = 5) -> list[str]:
    present = [w for w in PROBES if w in vocab]
    for w in counts_order:  # top up with frequent words when the corpus lacks the usual probes
        if len(present) >= k:
            break
        if w.isalpha() and len(w) > 2 and w not in present:
            present.append(w)
    return present[:k]


def nearest_neighbours(
    weight: torch.Tensor, vocab: list[str], words: list[str], k: int = 5, candidates: int | None = None
) -> dict[str, list]:
    """Cosine nearest neighbours of each word among the first `candidates` vocabulary entries (the vocabulary
    is ordered by training frequency); special tokens are left out."""
    e = torch.nn.functional.normalize(weight.float(), dim=1)
    pool = min(len(vocab), candidates or len(vocab))
    out = {}
    for w in words:
        i = vocab.index(w)
        sims = e[:pool] @ e[i]
        if i < pool:
            sims[i] = -2.0
        for j, tok in enumerate(vocab[:pool]):
            if tok.startswith("<") and tok.endswith(">"):
                sims[j] = -2.0
        top = sims.topk(min(k, pool - 1))
        out[w] = [[vocab[j], round(float(s), 3)] for s, j in zip(top.values, top.indices)]
    return out


@register_extra("embedding_neighbours")
@single_thread()
def embedding_neighbours(ctx: ExtraContext) -> ExtraResult:
    """Nearest neighbours of a few words in each variant's learned embedding (best run's first seed),
    written to the report and logged to that MLflow run as `embedding_neighbours.md`."""
    runs = by_variant(ok_runs(ctx))
    if ctx.data_dir is None or not runs:
        return ExtraResult(["Embedding neighbours need the prepared data and a finished run."])
    result: dict[str, Any] = {}
    md = [
        f"# {ctx.study}: nearest neighbours in the learned word embeddings",
        "",
        "Cosine similarity; candidates are the most frequent quarter of the vocabulary (at least 100 words).",
        "",
    ]
    for variant in [v for v in ranked_variants(ctx) if v in runs]:
        run = runs[variant][0]
        model, _, data = trained(ctx, run)
        vocab = list(data.info.extra["vocab"])
        words = _probes(vocab, [t for t, _ in data.meta.get("vocab", {}).get("top", [])])
        # Rare words barely move from their random initial vectors in a short run, and would crowd the lists
        # with chance similarities; neighbours come from the most frequent quarter of the vocabulary.
        pool = max(100, len(vocab) // 4)
        nn_ = nearest_neighbours(model.embedding.weight.detach(), vocab, words, candidates=pool)
        result[variant] = {"run_id": run["run_id"], "seed": run["tags"].get("seed"), "neighbours": nn_}
        block = [f"## {variant} (seed {run['tags'].get('seed')})", ""] + [
            f"- **{w}**: " + ", ".join(f"{t} ({s:.2f})" for t, s in ns) for w, ns in nn_.items()
        ]
        md += block + [""]
        with tempfile.TemporaryDirectory() as d:
            run_md = Path(d) / "embedding_neighbours.md"
            run_md.write_text("\n".join(block) + "\n")
            log_artifact(ctx, run, run_md)
    # The same lists, as data, go to analysis.json under extras.embedding_neighbours.
    (ctx.out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (ctx.out_dir / "tables" / "embedding_neighbours.md").write_text("\n".join(md))
    best = next(iter(result))
    shown = list(result[best]["neighbours"].items())[:3]
    sentence = (
        f"Nearest neighbours in the embedding of {best}: "
        + "; ".join(f"{w} → {', '.join(t for t, _ in ns[:3])}" for w, ns in shown)
        + " (all variants: tables/embedding_neighbours.md)."
    )
    return ExtraResult([sentence], [], {"neighbours": result})


# --------------------------------------------------------------------------- tagging


@register_extra("oov_accuracy")
def oov_accuracy(ctx: ExtraContext) -> ExtraResult:
    """Test accuracy on all tokens and on out-of-vocabulary tokens, per variant."""
    overall = per_variant(ctx, lambda r: final(r, "test_accuracy"))
    oov = per_variant(ctx, lambda r: final(r, "test_oov_accuracy"))
    if not oov:
        return ExtraResult(["No run reported an out-of-vocabulary accuracy (no OOV words in the test split?)."])
    sentence, table = comparison(oov, "test_oov_accuracy", "max")
    frac = [f for r in ok_runs(ctx) if (f := final(r, "test_oov_fraction")) is not None]
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
    fig = plots.grouped_bars(
        {"all tokens": bar_stats(overall), "out-of-vocabulary": bar_stats(oov)},
        ctx.out_dir / "figures" / "oov_accuracy.png",
        "test accuracy",
        f"{ctx.study}: tagging accuracy, all tokens vs out-of-vocabulary words",
    )
    return ExtraResult(sentences, [fig], table)


# --------------------------------------------------------------------------- sentiment


@torch.no_grad()
def _subset_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float | None:
    if len(x) == 0:
        return None
    return float((model(x).argmax(-1) == y).float().mean())


CONTRAST = frozenset({"but", "however", "although", "though", "yet", "whereas"})
SUBSETS = {  # name -> (description, does a sentence's word set belong to it)
    "negation": ("with a negation word", lambda words: any(is_negator(w) for w in words)),
    "contrast": ('with a contrast ("but")', lambda words: bool(CONTRAST & words)),
    "neither": ("with neither", lambda words: not any(is_negator(w) for w in words) and not CONTRAST & words),
}


@register_extra("sentiment_breakdown")
@single_thread()
def sentiment_breakdown(ctx: ExtraContext) -> ExtraResult:
    """Test F1 per variant, and test accuracy on the sentences with a negation word, with a contrast ("but"),
    and with neither, re-evaluated from each run's best weights: word order matters where a negation or a
    contrast decides the meaning, and an order-blind model should lose exactly there."""
    f1 = per_variant(ctx, lambda r: final(r, "test_f1"))
    sentences, tables, figs = [], {}, []
    if f1:
        s, tables["f1"] = comparison(f1, "test_f1", "max")
        sentences.append("Test macro-F1: " + s)
    if ctx.data_dir is None:
        return ExtraResult(sentences, figs, tables)
    acc: dict[str, dict[str, list[float]]] = {name: {} for name in SUBSETS}
    sizes: dict[str, int] = {}
    for variant, runs in by_variant(ok_runs(ctx)).items():
        for run in runs:
            model, _, data = trained(ctx, run)
            vocab = data.info.extra["vocab"]
            words = [{vocab[i] for i in row.tolist()} for row in data.x_test]
            for name, (_, member) in SUBSETS.items():
                mask = torch.tensor([member(w) for w in words], dtype=torch.bool)
                sizes[name] = int(mask.sum())
                a = _subset_accuracy(model, data.x_test[mask], data.y_test[mask])
                if a is not None:
                    acc[name].setdefault(variant, []).append(a)
    for name, (desc, _) in SUBSETS.items():
        if acc[name]:
            s, tables[name] = comparison(acc[name], f"accuracy_{name}", "max")
            sentences.append(f"On the {sizes[name]} test sentences {desc}: " + s)
    if any(acc.values()):
        figs.append(
            plots.grouped_bars(
                {f"{desc} (n={sizes[name]})": bar_stats(acc[name]) for name, (desc, _) in SUBSETS.items() if acc[name]},
                ctx.out_dir / "figures" / "negation_accuracy.png",
                "test accuracy",
                f"{ctx.study}: accuracy by kind of sentence",
            )
        )
    tables["subset_sizes"] = sizes
    return ExtraResult(sentences, figs, tables)
