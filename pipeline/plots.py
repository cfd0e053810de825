"""Figures (matplotlib, Agg backend): one function per kind of plot, each writing one PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def learning_curve(history: Sequence[Mapping[str, float]], path: Path, title: str = "") -> Path:
    """One run: losses and (when present) validation accuracy per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss", "val_loss"):
        if key in history[0]:
            ax.plot(epochs, [h.get(key, np.nan) for h in history], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if "val_accuracy" in history[0]:
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.get("val_accuracy", np.nan) for h in history], color="tab:green", label="val_accuracy")
        ax2.set_ylabel("val accuracy")
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.set_title(title)
    return _save(fig, path)


def curves_with_band(curves: Mapping[str, Sequence[Sequence[float]]], path: Path, ylabel: str, title: str = "") -> Path:
    """Mean per epoch over seeds with a ±1 std band, one line per variant.

    curves: variant -> list of per-seed series (equal length up to the shortest).
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, series in curves.items():
        n = min(len(s) for s in series)
        if n == 0:
            continue
        arr = np.array([s[:n] for s in series], dtype=float)
        mean, std = np.nanmean(arr, axis=0), np.nanstd(arr, axis=0)
        x = np.arange(1, n + 1)
        ax.plot(x, mean, label=f"{variant} (n={len(series)})")
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def bars_with_ci(rows: Sequence[Mapping], path: Path, ylabel: str, title: str = "") -> Path:
    """Final metric per variant: mean with its 95% confidence interval (or ± std when n < 2)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 4))
    names = [r["variant"] for r in rows]
    means = np.array([r["mean"] for r in rows], dtype=float)
    lo = np.array([r["ci_low"] if r["ci_low"] is not None else r["mean"] for r in rows], dtype=float)
    hi = np.array([r["ci_high"] if r["ci_high"] is not None else r["mean"] for r in rows], dtype=float)
    ax.bar(
        names,
        means,
        yerr=[means - lo, hi - means],
        capsize=4,
        color=["tab:orange" if r.get("rank") == 1 else "tab:blue" for r in rows],
    )
    for i, r in enumerate(rows):
        xs = r.get("values", [])
        ax.scatter([i] * len(xs), xs, color="black", s=10, zorder=3)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    finite = np.concatenate([lo, hi, means])
    finite = finite[np.isfinite(finite)]
    if len(finite):
        span = finite.max() - finite.min()
        ax.set_ylim(finite.min() - 0.5 * span - 1e-9, finite.max() + 0.5 * span + 1e-9)
    return _save(fig, path)


def scatter_xy(
    points: Sequence[Mapping], path: Path, xlabel: str, ylabel: str, title: str = "", logx: bool = True
) -> Path:
    """One point per variant (mean with std error bars), e.g. accuracy against parameter count."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for p in points:
        ax.errorbar(p["x"], p["y"], yerr=p.get("yerr", 0), fmt="o", capsize=3)
        ax.annotate(p["label"], (p["x"], p["y"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def layer_lines(per_variant: Mapping[str, Mapping[str, float]], path: Path, ylabel: str, title: str = "") -> Path:
    """A per-layer quantity (e.g. gradient norm at the first epoch) across layers, one line per variant."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, layers in per_variant.items():
        names = list(layers)
        ax.plot(range(len(names)), [layers[n] for n in names], marker="o", label=variant)
        ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion(matrix: np.ndarray, path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)
