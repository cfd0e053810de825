"""Language-model study: nearest neighbours of a few words in each variant's learned word embedding, written
to the report's tables and logged to the run they come from."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from pipeline.runs import by_variant, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import log_artifact, ranked_variants, single_thread

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


@register_section("embedding_neighbours")
@single_thread()
def embedding_neighbours(ctx: Context) -> Result:
    """Nearest neighbours of a few words in each variant's learned embedding (best run's first seed),
    written to the report and logged to that MLflow run as `embedding_neighbours.md`."""
    runs = by_variant(ok_runs(ctx.runs))
    if ctx.data_dir is None or not runs:
        return Result(["Embedding neighbours need the prepared data and a finished run."])
    result: dict[str, Any] = {}
    md = [
        f"# {ctx.study}: nearest neighbours in the learned word embeddings",
        "",
        "Cosine similarity; candidates are the most frequent quarter of the vocabulary (at least 100 words).",
        "",
    ]
    for variant in [v for v in ranked_variants(ctx) if v in runs]:
        run = runs[variant][0]
        trained = ctx.loader.load(run)
        model, data = trained.model, trained.data
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
    return Result([sentence], [], {"neighbours": result})
