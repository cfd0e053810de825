"""Generative study: sample quality measured the same way for every family.

Sample quality uses a *judge*: a small classifier trained here, deterministically, on the study's own
prepared training split. Every run's best weights draw as many samples as the test split has images, and
the report states (1) the Fréchet distance between judge features of the samples and of the real test
images (FID's formula with a judge fitted to this data instead of Inception), (2) the judge's mean
confidence on the samples (recognizable digits score high) and (3) the entropy of its mean predicted class
distribution (ln 10 = 2.30 when every class is generated equally often; low when the model collapses to a few).
For the autoencoders it also decodes draws from the prior N(0, I) itself (`prior_classifier_fd`): the VAE is trained
to make those digits, the plain autoencoder is not (its own sampler uses a Gaussian fitted to its codes). And it
states each family's own objective from the best checkpoint on the test split: the VAE's ELBO with its KL and
reconstruction terms, the autoencoders' reconstruction error, the GAN discriminator's accuracy (0.5 = chance).

Per-seed values of every score go to `tables["values"]` for the study's claims.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import plots
from pipeline.data import Splits
from pipeline.runs import Run, by_variant, finite_final, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, FRACTION, decided_by, describe, ms, single_thread, stat
from pipeline.tasks.generative import feature_gaussian, frechet_distance
from pipeline.text import join

JUDGE_STEPS = 600  # Adam steps of batch 128: ~70 epochs of 8x8 digits, ~8 of a 10k MNIST subset
SAMPLE_SEED = 0


class Judge(nn.Module):
    """MLP classifier whose 64-unit penultimate layer is the feature space of the Fréchet distance."""

    def __init__(self, n_in: int, n_classes: int):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(n_in, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU())
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_judge(data: Splits, steps: int = JUDGE_STEPS, seed: int = 0) -> tuple[Judge, float]:
    """The judge and its test accuracy. Seeded: every report of the same data gets the same judge."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        judge = Judge(data.x_train[0].numel(), data.info.num_classes)
        opt = torch.optim.Adam(judge.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        n = len(data.x_train)
        for _ in range(steps):
            b = torch.randint(n, (min(128, n),), generator=g)
            loss = F.cross_entropy(judge(data.x_train[b]), data.y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    judge.eval()
    with torch.no_grad():
        acc = float((judge(data.x_test).argmax(1) == data.y_test).float().mean())
    return judge, acc


@torch.no_grad()
def judge_scores(judge: Judge, images: torch.Tensor, real: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Fréchet distance to the real test features, mean confidence and class entropy of `images`."""
    feats = judge.features(images)
    probs = judge.head(feats).softmax(1)
    mean_p = probs.mean(0)
    return {
        "classifier_fd": frechet_distance(*real, *feature_gaussian(feats)),
        "confidence": float(probs.max(1).values.mean()),
        "class_entropy": float(-(mean_p * mean_p.clamp_min(1e-12).log()).sum()),
    }


# test metrics of the best checkpoint, per family, in the order a sentence gives them: (key, label, digits)
OBJECTIVES: tuple[tuple[str, str, int], ...] = (
    ("test_elbo", "ELBO", 2),
    ("test_kl", "KL", 2),
    ("test_recon_bce", "reconstruction NLL", 2),
    ("test_recon_error", "reconstruction MSE", 4),
    ("test_d_accuracy", "discriminator accuracy", 3),
    ("test_d_real", "D(real)", 3),
    ("test_d_fake", "D(generated)", 3),
    ("test_fd_pixels", "pixel-space FD", 3),
)


def objective_values(runs: dict[str, list[Run]]) -> dict[str, dict[str, list[float]]]:
    """metric -> variant -> per-seed test value (best checkpoint), for the metrics in OBJECTIVES a family logs."""
    out: dict[str, dict[str, list[float]]] = {}
    for key, _, _ in OBJECTIVES:
        for variant, rs in runs.items():
            vals = [v for r in rs if (v := finite_final(r, key)) is not None]
            if vals:
                out.setdefault(key.removeprefix("test_"), {})[variant] = vals
    return out


def objective_sentence(values: dict[str, dict[str, list[float]]]) -> str | None:
    """Each family's own numbers in one sentence: 'vae: ELBO -24.6 ± 0.2 nats/image (KL ..., ...); gan: ...'."""
    parts = []
    variants = list(dict.fromkeys(v for per in values.values() for v in per))
    for variant in variants:
        items = [
            f"{label} {ms(stat(values[key.removeprefix('test_')][variant], key), digits)}"
            for key, label, digits in OBJECTIVES
            if variant in values.get(key.removeprefix("test_"), {})
        ]
        if items:
            parts.append(f"{variant}: {items[0]}" + (f" ({', '.join(items[1:])})" if len(items) > 1 else ""))
    if not parts:
        return None
    return (
        "Each family's own objective on the test split (best checkpoint; ELBO, KL and reconstruction NLL in nats "
        "per image, MSE per pixel; a discriminator accuracy of 0.5 is chance): " + "; ".join(parts) + "."
    )


@register_section("sample_quality")
@single_thread()
def sample_quality(ctx: Context) -> Result:
    """Judge-feature Fréchet distance, judge confidence and class coverage of every run's samples."""
    runs = by_variant(ok_runs(ctx.runs))
    if ctx.data_dir is None or not runs:
        return Result(["Sample quality needs the prepared data and a finished run."])
    order = list(runs)
    data = ctx.loader.load(runs[order[0]][0]).data
    judge, judge_acc = train_judge(data)
    n = len(data.x_test)
    with torch.no_grad():
        real = feature_gaussian(judge.features(data.x_test))
        # the floor: real training images against the real test images, same count
        floor = judge_scores(judge, data.x_train[:n], real)
    scores: dict[str, dict[str, list[float]]] = {}
    grids: dict[str, torch.Tensor] = {}
    recons: dict[str, torch.Tensor] = {}
    for variant in order:
        for i, run in enumerate(runs[variant]):
            model = ctx.loader.load(run).model
            with torch.no_grad():
                samples = model.sample(n, generator=torch.Generator().manual_seed(SAMPLE_SEED)).float()
            for k, v in judge_scores(judge, samples, real).items():
                scores.setdefault(k, {}).setdefault(variant, []).append(v)
            if hasattr(model, "decode"):  # the prior itself, not the model's own sampler
                with torch.no_grad():
                    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(SAMPLE_SEED))
                    prior = judge_scores(judge, model.decode(z).float(), real)["classifier_fd"]
                scores.setdefault("prior_classifier_fd", {}).setdefault(variant, []).append(prior)
            if i == 0:
                grids[variant] = samples[:64]
                if hasattr(model, "encode"):
                    with torch.no_grad():
                        originals = data.x_test[:32]
                        recons[variant] = torch.cat([originals, model.decode(model.encode(originals))])
    fd_table = {v: stat(x, "classifier_fd") for v, x in scores["classifier_fd"].items()}
    mean = lambda vals: sum(vals) / len(vals)  # noqa: E731
    sentences = [
        f"Sample quality, judged by a classifier trained on the same data (test accuracy {judge_acc:.3f}): "
        f"classifier_fd, the Fréchet distance between its features of each run's samples and of the real test "
        f"images ({DESCRIBED}): " + ", ".join(f"{v} {describe(s)}" for v, s in fd_table.items()) + ".",
        "Judge confidence on samples (means over seeds): "
        + ", ".join(f"{v} {mean(x):.3f}" for v, x in scores["confidence"].items())
        + f" (real test images: {floor['confidence']:.3f}); class entropy: "
        + ", ".join(f"{v} {mean(x):.2f}" for v, x in scores["class_entropy"].items())
        + f" (real: {floor['class_entropy']:.2f}, uniform: {math.log(data.info.num_classes):.2f}).",
        f"For scale, real training images score a Fréchet distance of {floor['classifier_fd']:.3g} to the test images.",
    ]
    if prior := scores.get("prior_classifier_fd"):
        sentences.append(
            "Decoding draws from the prior N(0, I) itself (judge-feature FD): "
            + ", ".join(f"{v} {describe(stat(x, 'prior_classifier_fd'), 1)}" for v, x in prior.items())
            + f"; {join(list(prior))} {'is' if len(prior) == 1 else 'are'} the models with a decoder, and only a VAE "
            "is trained so that the prior decodes to digits."
        )
    objectives = objective_values({v: runs[v] for v in order})
    if (text := objective_sentence(objectives)) is not None:
        sentences.append(text)
    sentences.append(decided_by(ctx, "classifier_fd", "prior_classifier_fd", "the families' own objectives"))
    figs = [
        plots.image_grids(grids, ctx.out_dir / "figures" / "samples.png", f"{ctx.study}: samples (first seed)"),
    ]
    if recons:
        figs.append(
            plots.image_grids(
                recons,
                ctx.out_dir / "figures" / "reconstructions.png",
                f"{ctx.study}: test images (top) and reconstructions (bottom)",
            )
        )
    # a mean top-class probability, and the entropy of the mean class distribution: 0 to ln(classes)
    ranges = {"confidence": FRACTION, "class_entropy": (0.0, math.log(data.info.num_classes))}
    table: dict[str, Any] = {
        "judge_test_accuracy": judge_acc,
        "real_floor": floor,
        "samples_per_run": n,
        "classifier_fd": fd_table,
        **{
            k: {v: stat(x, k, ranges.get(k, "auto")) for v, x in scores[k].items()}
            for k in ("confidence", "class_entropy", "prior_classifier_fd")
            if k in scores
        },
        # per seed, in seed order: the study's claims read these (`sample_quality.<quantity>`)
        "values": {**scores, **objectives},
    }
    return Result(sentences, figs, table)
