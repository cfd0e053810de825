"""Language-model study: nearest neighbours of a few words in each variant's learned word embedding, beside the
neighbours the same words had at initialization (the same seed's untrained model), and how far training moved the
embedding: the mean cosine distance between each word's initial and trained vector, and the overlap of the two
top-k neighbour lists. Written to the report's tables and logged to the run they come from."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from pipeline.runs import by_variant, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import (
    DESCRIBED,
    FRACTION,
    decided_by,
    describe,
    log_artifact,
    single_thread,
    stat,
)

PROBES = ("dog", "good", "bad", "loves", "quickly", "not", "king", "love", "the")
K = 5


def _probes(vocab: list[str], counts_order: list[str], k: int = 5) -> list[str]:
    present = [w for w in PROBES if w in vocab]
    for w in counts_order:  # top up with frequent words when the corpus lacks the usual probes
        if len(present) >= k:
            break
        if w.isalpha() and len(w) > 2 and w not in present:
            present.append(w)
    return present[:k]


def nearest_neighbours(
    weight: torch.Tensor, vocab: list[str], words: list[str], k: int = K, candidates: int | None = None
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


def embedding_drift(initial: torch.Tensor, trained: torch.Tensor, rows: int | None = None) -> float:
    """Mean cosine distance (1 - cos) between each word's vector at initialization and after training, over the
    first `rows` vocabulary entries (all when None); all-zero rows (the padding) are left out. 0: unmoved;
    1: on average orthogonal to where it started."""
    a, b = initial[:rows].float(), trained[:rows].float()
    keep = (a.norm(dim=1) > 0) & (b.norm(dim=1) > 0)
    cos = torch.nn.functional.cosine_similarity(a[keep], b[keep], dim=1)
    return float((1 - cos).mean()) if len(cos) else float("nan")


def neighbour_overlap(before: dict[str, list], after: dict[str, list]) -> float:
    """Mean over words of |top-k before ∩ top-k after| / k: 1 when training left every list as it was."""
    shares = []
    for w, ns in after.items():
        a, b = {t for t, _ in ns}, {t for t, _ in before.get(w, [])}
        if ns:
            shares.append(len(a & b) / len(ns))
    return sum(shares) / len(shares) if shares else float("nan")


def _block(variant: str, seed: Any, trained: dict[str, list], initial: dict[str, list], drift: float) -> list[str]:
    lines = [f"## {variant} (seed {seed})", "", f"Mean cosine distance from the initial vectors: {drift:.3f}.", ""]
    lines += ["| word | trained neighbours | at initialization (same seed) |", "|---|---|---|"]
    for w, ns in trained.items():
        after = ", ".join(f"{t} ({s:.2f})" for t, s in ns)
        before = ", ".join(f"{t} ({s:.2f})" for t, s in initial.get(w, []))
        lines.append(f"| **{w}** | {after} | {before} |")
    return lines


@register_section("embedding_neighbours")
@single_thread()
def embedding_neighbours(ctx: Context) -> Result:
    """Per run: the probe words' neighbours after training and at initialization, the embedding's drift and the
    neighbour-list overlap (per-seed values for claims); the first seed's lists go to the report's tables and to
    that MLflow run as `embedding_neighbours.md`."""
    runs = by_variant(ok_runs(ctx.runs))
    if ctx.data_dir is None or not runs:
        return Result(["Embedding neighbours need the prepared data and a finished run."])
    result: dict[str, Any] = {}
    values: dict[str, dict[str, list[float]]] = {"embedding_drift": {}, "neighbour_overlap": {}}
    md = [
        f"# {ctx.study}: nearest neighbours in the learned word embeddings",
        "",
        f"Cosine similarity; top {K}; candidates are the most frequent quarter of the vocabulary (at least 100 "
        "words). Beside each list, the same word's neighbours in the same seed's untrained model: a list that is "
        "still the initial one was not learned.",
        "",
    ]
    for variant in runs:
        for i, run in enumerate(runs[variant]):
            trained = ctx.loader.load(run)
            data, cfg = trained.data, trained.config
            vocab = list(data.info.extra["vocab"])
            words = _probes(vocab, [t for t, _ in data.meta.get("vocab", {}).get("top", [])])
            # Rare words barely move from their initial vectors in a short run, and would crowd the lists with
            # chance similarities; neighbours and drift come from the most frequent quarter of the vocabulary.
            pool = max(100, len(vocab) // 4)
            start = ctx.loader.untrained(cfg).embedding.weight.detach()
            end = trained.model.embedding.weight.detach()
            after = nearest_neighbours(end, vocab, words, candidates=pool)
            before = nearest_neighbours(start, vocab, words, candidates=pool)
            drift, overlap = embedding_drift(start, end, pool), neighbour_overlap(before, after)
            values["embedding_drift"].setdefault(variant, []).append(drift)
            values["neighbour_overlap"].setdefault(variant, []).append(overlap)
            if i:
                continue
            seed = run["tags"].get("seed")
            result[variant] = {"run_id": run["run_id"], "seed": seed, "neighbours": after, "initial": before}
            block = _block(variant, seed, after, before, drift)
            md += block + [""]
            with tempfile.TemporaryDirectory() as d:
                run_md = Path(d) / "embedding_neighbours.md"
                run_md.write_text("\n".join(block) + "\n")
                log_artifact(ctx, run, run_md)
    (ctx.out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (ctx.out_dir / "tables" / "embedding_neighbours.md").write_text("\n".join(md))
    # one variant's lists in the text (all of them are in the table): the headline table's first, as an example
    rank = {v: row.get("rank") or 1e9 for v, row in ctx.analysis["variants"].items()}
    shown_variant = min(result, key=lambda v: rank.get(v, 1e9))
    shown = list(result[shown_variant]["neighbours"].items())[:3]
    initial = result[shown_variant]["initial"]
    drift = {v: stat(x, "embedding_drift", (0.0, 2.0)) for v, x in values["embedding_drift"].items()}  # 1 - cos
    overlap = {v: stat(x, "neighbour_overlap", FRACTION) for v, x in values["neighbour_overlap"].items()}
    sentences = [
        f"Nearest neighbours in the trained embedding of {shown_variant} (seed {result[shown_variant]['seed']}): "
        + "; ".join(
            f"{w} → {', '.join(t for t, _ in ns[:3])} (at initialization: "
            f"{', '.join(t for t, _ in initial.get(w, [])[:3])})"
            for w, ns in shown
        )
        + " (all variants: tables/embedding_neighbours.md).",
        f"How far training moved each variant's embedding ({DESCRIBED}): the mean cosine distance of the word vectors "
        "from their initial ones, "
        + ", ".join(f"{v} {describe(s)}" for v, s in drift.items())
        + f"; the share of each probe word's top-{K} neighbours that were already its neighbours at initialization, "
        + ", ".join(f"{v} {describe(s, 2)}" for v, s in overlap.items())
        + ". "
        + decided_by(ctx, "embedding_drift", "neighbour_overlap"),
    ]
    return Result(sentences, [], {"neighbours": result, "values": values})
