"""Tasks of the language studies: perplexity for language models, OOV accuracy for taggers, F1 for classifiers.

Imported at the bottom of `pipeline.tasks`, so every task is registered with the others.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.tasks.base import TRAIN_METRICS, Classification, Task, register_task

IGNORE = -100


@register_task(
    "language_model",
    train=(*TRAIN_METRICS, "perplexity"),
    val=("loss", "accuracy", "perplexity"),
    labels="language_model",
)
class LanguageModel(Classification):
    """Next-token prediction over (batch, time, vocab) outputs; perplexity = exp(mean token cross-entropy)."""

    metric, mode = "val_perplexity", "min"

    def loss(self, out, y):
        if out.ndim == 3:  # a softmax over the vocabulary is costly: skip the padding rows before it, not after
            real = y != IGNORE
            return F.cross_entropy(out[real], y[real])
        return super().loss(out, y)

    def finalize(self, sums, prefix):
        out = super().finalize(sums, prefix)
        # exp of the mean per-token loss over the whole split (not a mean of per-batch perplexities)
        out[f"{prefix}_perplexity"] = math.exp(min(out[f"{prefix}_loss"], 50.0))
        return out


@register_task("tagging", val=("loss", "accuracy", "oov_accuracy", "oov_fraction"), labels="tagging")
class Tagging(Task):
    """Sequence tagging with y (batch, time, 2): gold tag (-100 on padding) and an out-of-vocabulary flag.

    Reports token accuracy and, separately, accuracy on out-of-vocabulary words (`oov_accuracy`): the
    words a word-embedding model has never seen, where only context or spelling can help.
    """

    metric, mode = "val_accuracy", "max"

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.flatten(0, 1), y[..., 0].flatten(), ignore_index=IGNORE)

    def batch_sums(self, out, y):
        tags, oov = y[..., 0], y[..., 1] == 1
        real = tags != IGNORE
        correct = (out.argmax(-1) == tags) & real
        n = real.sum().float()
        return {
            "loss": self.loss(out, y).detach() * n,
            "count": n,
            "accuracy": correct.sum().float(),
            "oov_correct": (correct & oov).sum().float(),
            "oov_count": (oov & real).sum().float(),
        }

    def finalize(self, sums, prefix):
        n = max(sums["count"], 1.0)
        out = {f"{prefix}_{k}": sums[k] / n for k in ("loss", "accuracy", "grad_norm") if k in sums}
        if sums.get("oov_count", 0) > 0:
            out[f"{prefix}_oov_accuracy"] = sums["oov_correct"] / sums["oov_count"]
            out[f"{prefix}_oov_fraction"] = sums["oov_count"] / n
        return out

    def step_count(self, y: torch.Tensor) -> torch.Tensor:
        # The base counts every non-(-100) entry of y, which here would include the OOV channel.
        return (y[..., 0] != IGNORE).sum().float()


@register_task("classification_f1", val=("loss", "accuracy", "f1"), labels="classification")
class ClassificationF1(Classification):
    """Classification plus macro-F1 (the mean over classes of 2TP / (2TP + FP + FN)), from summed counts."""

    def batch_sums(self, out, y):
        sums = super().batch_sums(out, y)
        pred = out.argmax(dim=-1)
        for k in range(out.shape[-1]):
            p, t = pred == k, y == k
            sums[f"tp_{k}"] = (p & t).sum().float()
            sums[f"fp_{k}"] = (p & ~t).sum().float()
            sums[f"fn_{k}"] = (~p & t).sum().float()
        return sums

    def finalize(self, sums, prefix):
        counts = {k: v for k, v in sums.items() if k[:3] in ("tp_", "fp_", "fn_")}
        out = super().finalize({k: v for k, v in sums.items() if k not in counts}, prefix)
        if counts:
            f1 = []
            for k in sorted({c[3:] for c in counts}, key=int):
                tp, fp, fn = counts.get(f"tp_{k}", 0.0), counts.get(f"fp_{k}", 0.0), counts.get(f"fn_{k}", 0.0)
                if tp + fp + fn > 0:  # a class absent from both labels and predictions says nothing
                    f1.append(2 * tp / (2 * tp + fp + fn))
            out[f"{prefix}_f1"] = sum(f1) / len(f1) if f1 else 0.0
        return out
