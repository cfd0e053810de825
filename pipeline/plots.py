"""Figures (matplotlib, Agg backend): one function per kind of plot, each writing one PNG.

Also the range each metric lives in (`metric_bounds`): the report's intervals and every axis here read it, and
this leaf is the one module both the report and its sections import.

Error bars are never computed here: a figure of means over seeds takes each variant's summary as the report
keeps it (`pipeline.sections.common.stat`: the mean, `ci_low`/`ci_high` from `honest_stats`, the seeds' `values`),
draws the 95% interval of the mean as its whiskers and says so in its title (`interval_note`). The only spread
drawn is the learning curves' ±1 SD band, labelled as such.
"""

from __future__ import annotations

import re
import textwrap
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Bounds = tuple[float | None, float | None]

# The range of a metric, by the words of its name (`test_accuracy`, `val_fd_pixels`, `grad_norm/fc1`, or an axis
# label such as "validation accuracy"). Fractions are bounded on both sides, magnitudes below by 0 (perplexity by 1,
# its value for a perfect model); anything else (an ELBO, a weight, a difference) is unbounded.
FRACTION_WORDS = ("accuracy", "f1", "fraction", "frac")
POSITIVE_WORDS = (
    "loss", "seconds", "fd", "params", "flops", "samples_per_s", "memory", "mb", "grad_norm", "weight_norm",
    "act_std", "recon_error", "recon_bce", "mse", "epochs", "epochs_to_target", "throughput",
)  # fmt: skip


def metric_bounds(name: str) -> Bounds | None:
    """(low, high) of a metric's possible values, None when unbounded: accuracy/F1/fractions (0, 1); perplexity
    (1, inf); losses, seconds, Fréchet distances, parameter and FLOP counts, throughput, norms (0, inf)."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    joined = "_".join(words)
    if any(w in FRACTION_WORDS for w in words):
        return (0.0, 1.0)
    if "perplexity" in words:
        return (1.0, None)
    if any(w in words or (("_" in w) and w in joined) for w in POSITIVE_WORDS):
        return (0.0, None)
    return None


def axis_limits(values: Sequence[float], bounds: Bounds | None, pad: float = 0.15) -> tuple[float, float] | None:
    """y limits around `values` with some padding, never outside the metric's range; None when nothing is finite.

    Without declared bounds, data that are all non-negative get no negative axis either (a section's throughput)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    lo_b, hi_b = bounds if bounds is not None else ((0.0 if x.min() >= 0 else None), None)
    span = float(x.max() - x.min()) or max(abs(float(x.max())) * 0.05, 1e-6)
    lo, hi = float(x.min()) - pad * span, float(x.max()) + pad * span
    if lo_b is not None:
        lo = max(lo, lo_b)
    if hi_b is not None:
        hi = min(hi, hi_b)
    return (lo, hi) if hi > lo else None


def _clip(x: np.ndarray, bounds: Bounds | None) -> np.ndarray:
    lo, hi = bounds if bounds is not None else (None, None)
    return np.clip(x, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)


def short(label: str, width: int = 40) -> str:
    """A tick label cut to `width` characters: a long grid variant's name would push the axes off the figure."""
    return label if len(label) <= width else label[: width - 1] + "…"


def _title(ax, title: str, fontsize: int = 10) -> None:
    """A title wrapped to the axes' width, so a long one is not cut off at the figure's edge (each line of a
    multi-line title wrapped on its own)."""
    chars = max(30, int(ax.figure.get_figwidth() * 72 / (0.6 * fontsize)))
    ax.set_title("\n".join(textwrap.fill(line, chars) for line in title.split("\n")), fontsize=fontsize)


def interval_note(stats: Iterable[Mapping], what: str = "whiskers") -> str:
    """What the error bars of a figure of summaries are, for its title: "whiskers: 95% interval of the mean over
    3 seeds" ("2-5 seeds" when the counts differ; a one-seed summary has no interval and gets no whisker)."""
    ns = sorted({int(s["n"]) for s in stats if s.get("n")})
    if not ns:
        return f"{what}: 95% interval of the mean over seeds"
    if ns == [1]:
        return f"{what}: none, one seed each (no interval)"
    seeds = f"{ns[0]}" if ns[0] == ns[-1] else f"{ns[0]}-{ns[-1]}"
    one = " (none for one seed)" if ns[0] == 1 else ""
    return f"{what}: 95% interval of the mean over {seeds} seeds{one}"


def interval_errors(stats: Sequence[Mapping]) -> np.ndarray:
    """matplotlib's asymmetric error bars, [[below], [above]] each mean, from each summary's `ci_low`/`ci_high`;
    0 where a summary has none (one seed, or a known value such as a true coefficient)."""
    mean = np.array([s["mean"] for s in stats], dtype=float)
    lo = np.array([s["ci_low"] if s.get("ci_low") is not None else s["mean"] for s in stats], dtype=float)
    hi = np.array([s["ci_high"] if s.get("ci_high") is not None else s["mean"] for s in stats], dtype=float)
    return np.array([np.maximum(mean - lo, 0.0), np.maximum(hi - mean, 0.0)]).reshape(2, len(stats))


def axis_values(stats: Iterable[Mapping], reach: float = 2.0) -> list[float]:
    """What an axis must show of these summaries: every mean and seed, and each interval end up to `reach` times
    the data's span beyond them. Two seeds on a log scale can give an interval up to 1e24 samples/s; its whisker
    then runs off the axis instead of squashing every bar flat."""
    stats = list(stats)
    data = [float(s["mean"]) for s in stats] + [float(x) for s in stats for x in s.get("values", [])]
    if not data:
        return []
    lo, hi = min(data), max(data)
    span = (hi - lo) or max(abs(hi) * 0.05, 1e-6)
    ends = [float(s[k]) for s in stats for k in ("ci_low", "ci_high") if s.get(k) is not None]
    return data + [min(max(e, lo - reach * span), hi + reach * span) for e in ends]


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


def per_epoch(series: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, sample std and count per epoch over the runs that reached it (early-stopped runs end sooner)."""
    n = max(len(s) for s in series)
    arr = np.full((len(series), n), np.nan)
    for i, s in enumerate(series):
        arr[i, : len(s)] = s
    count = np.sum(np.isfinite(arr), axis=0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # epochs only one run reached, all-NaN epochs
        mean = np.nanmean(arr, axis=0)
        std = np.where(count > 1, np.nanstd(arr, axis=0, ddof=1), 0.0)
    return mean, std, count


def curves_with_band(
    curves: Mapping[str, Sequence[Sequence[float]]],
    path: Path,
    ylabel: str,
    title: str = "",
    bounds: Bounds | None | str = "auto",
) -> Path:
    """Mean per epoch over seeds with a ±1 sample-std band, one line per variant; the legend says what the band is.

    curves: variant -> list of per-seed series. Series may differ in length (early-stopped runs): each epoch
    averages the runs that reached it. The band shows the seeds' spread, not an interval of the mean, clipped to
    the metric's range (`bounds`, by default `metric_bounds(ylabel)`): mean ± std of accuracies near 1 would
    otherwise draw above 1.
    """
    bounds = metric_bounds(ylabel) if bounds == "auto" else bounds
    shown: list[float] = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, series in curves.items():
        if max((len(s) for s in series), default=0) == 0:
            continue
        mean, std, _ = per_epoch(series)
        x = np.arange(1, len(mean) + 1)
        low, high = _clip(mean - std, bounds), _clip(mean + std, bounds)
        ax.plot(x, mean, label=f"{variant} (n={len(series)})")
        ax.fill_between(x, low, high, alpha=0.2)
        shown += [*low.tolist(), *high.tolist()]
    if (lim := axis_limits(shown, bounds, pad=0.05)) is not None:
        ax.set_ylim(*lim)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    _title(ax, title)
    ax.legend(fontsize=8, title="mean over seeds; band ±1 SD (seed spread)", title_fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def bars_with_ci(
    rows: Sequence[Mapping], path: Path, ylabel: str, title: str = "", bounds: Bounds | None | str = "auto"
) -> Path:
    """Final metric per variant: mean with its 95% interval as whiskers, seeds as dots; the title says so.

    rows: a summary (`mean`, `ci_low`, `ci_high`, `values`, `n`) with "variant" and "rank"; a row without an
    interval (one seed) gets no whisker. The intervals are in range by construction (`honest_stats`); whiskers and
    the axis are kept inside the metric's range all the same (`bounds`, by default `metric_bounds(ylabel)`; data
    that are all non-negative get no negative axis).
    """
    bounds = metric_bounds(ylabel) if bounds == "auto" else bounds
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 4))
    names = [r["variant"] for r in rows]
    means = np.array([r["mean"] for r in rows], dtype=float)
    lo = np.array([r["ci_low"] if r.get("ci_low") is not None else r["mean"] for r in rows], dtype=float)
    hi = np.array([r["ci_high"] if r.get("ci_high") is not None else r["mean"] for r in rows], dtype=float)
    seeds = [float(x) for r in rows for x in r.get("values", [])]
    floor = bounds if bounds is not None else ((0.0, None) if min([*means, *seeds], default=0) >= 0 else None)
    lo, hi = _clip(lo, floor), _clip(hi, floor)
    colors = ["tab:orange" if r.get("rank") == 1 else "tab:blue" for r in rows]
    x = np.arange(len(rows))
    base = floor[0] if floor is not None and floor[0] is not None else 0.0
    # bars grow from the metric's lower bound (0 for accuracy, 1 for perplexity), so no bar reaches outside its range
    ax.bar(x, means - base, bottom=base, color=colors, alpha=0.85)
    ax.errorbar(x, means, yerr=[means - lo, hi - means], fmt="none", ecolor="black", capsize=4, lw=1.2)
    for i, r in enumerate(rows):
        xs = r.get("values", [])
        ax.scatter([i] * len(xs), xs, color="black", s=10, zorder=3)
    ax.set_xticks(x, [short(n) for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    _title(ax, f"{title}\n{interval_note(rows)}; dots: seeds")
    if (lim := axis_limits(axis_values(rows), floor, pad=0.5)) is not None:
        ax.set_ylim(*lim)
    return _save(fig, path)


def scatter_xy(
    points: Sequence[Mapping],
    path: Path,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = True,
    ybounds: Bounds | None | str = "auto",
) -> Path:
    """One point per variant, e.g. accuracy vs parameters: {"label", "x": summary, "y": summary}, each summary's
    mean with its 95% interval as error bars (none without one); the y axis stays inside the metric's range
    (`metric_bounds(ylabel)` by default)."""
    ybounds = metric_bounds(ylabel) if ybounds == "auto" else ybounds
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for p in points:
        x, y = p["x"]["mean"], p["y"]["mean"]
        ax.errorbar(x, y, xerr=interval_errors([p["x"]]), yerr=interval_errors([p["y"]]), fmt="o", capsize=3)
        ax.annotate(p["label"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if logx:
        ax.set_xscale("log")
    if (lim := axis_limits(axis_values(p["y"] for p in points), ybounds, pad=0.15)) is not None:
        ax.set_ylim(*lim)
    xs = axis_values(p["x"] for p in points)
    if logx and (pos := [x for x in xs if x > 0]):
        ax.set_xlim(min(pos) / 1.5, max(pos) * 1.5)
    elif not logx and (lim := axis_limits(xs, None, pad=0.15)) is not None:
        ax.set_xlim(*lim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, f"{title}\n{interval_note([p['y'] for p in points], 'error bars')}")
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


def confusion(matrix: np.ndarray, path: Path, title: str = "", labels: Sequence[str] | None = None) -> Path:
    """Counts of (true, predicted) classes; each cell annotated when there are few classes."""
    matrix = np.asarray(matrix)
    k = len(matrix)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * k + 2), max(4.5, 0.45 * k + 1.5)))
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax)
    labels = list(labels) if labels is not None else [str(i) for i in range(k)]
    if k <= 20:
        ax.set_xticks(range(k), labels, rotation=45 if max(map(len, labels)) > 2 else 0, fontsize=7)
        ax.set_yticks(range(k), labels, fontsize=7)
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                color = "white" if v > threshold else "black"
                ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------- classic-study sections (pipeline.sections)


def series_xy(
    series: Mapping[str, Sequence[tuple[float, Mapping]]],
    path: Path,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    logy: bool = False,
    hlines: Mapping[str, float] | None = None,
) -> Path:
    """Lines of (x, summary) points, each summary's mean with its 95% interval as whiskers, one line per series
    (e.g. MSE against degree, accuracy against depth per width); `hlines` draws labelled horizontal references
    (e.g. the noise floor). A linear y axis stays inside the metric's range (`metric_bounds(ylabel)`)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    shown: list[Mapping] = []
    for name, points in series.items():
        pts = sorted(points, key=lambda p: p[0])
        stats = [s for _, s in pts]
        xs, means = [x for x, _ in pts], [s["mean"] for s in stats]
        ax.errorbar(xs, means, yerr=interval_errors(stats), marker="o", capsize=3, label=name)
        shown += stats
    for i, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="gray", linestyle=["--", ":", "-."][i % 3], label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    elif (lim := axis_limits(axis_values(shown), metric_bounds(ylabel), pad=0.15)) is not None:
        ax.set_ylim(*lim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, f"{title}\n{interval_note(shown)}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def decision_boundary(
    x: np.ndarray,
    y: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    path: Path,
    title: str = "",
    lines: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """2-D points coloured by class, a model's decision boundary (the 0 level of its logit on `grid` =
    (xx, yy, logits)) and reference lines w0*x0 + w1*x1 + b = 0 given as `lines` {label: (w0, w1, b)}."""
    xx, yy, zz = grid
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.contourf(xx, yy, zz > 0, levels=[-0.5, 0.5, 1.5], colors=["tab:blue", "tab:orange"], alpha=0.12)
    ax.contour(xx, yy, zz, levels=[0], colors="black", linewidths=1.5)
    ax.plot([], [], color="black", label="learned boundary")
    for cls, color in ((0, "tab:blue"), (1, "tab:orange")):
        pts = x[y == cls]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, color=color, alpha=0.6, label=f"class {cls}")
    xs = np.array([xx.min(), xx.max()])
    for i, (label, (w0, w1, b)) in enumerate((lines or {}).items()):
        if abs(w1) > 1e-12:
            ax.plot(xs, -(w0 * xs + b) / w1, linestyle=["--", ":"][i % 2], color="gray", label=label)
        else:
            ax.axvline(-b / w0, linestyle=["--", ":"][i % 2], color="gray", label=label)
    ax.set_xlim(xx.min(), xx.max())
    ax.set_ylim(yy.min(), yy.max())
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


# ---- language and generative studies (pipeline/sections)


def perplexity_by_order(
    lines: Mapping[str, Sequence[tuple[float, Mapping]]],
    flat: Mapping[str, Mapping],
    path: Path,
    title: str = "",
    ylabel: str = "perplexity",
) -> Path:
    """Perplexity (`ylabel` says which) against n-gram order: one line per family/width of (N, summary) points
    (mean, 95% interval as whiskers, seeds as dots); a model without an order (an LSTM) as its mean, a horizontal
    line, with its interval as a band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown: list[Mapping] = []
    for label, points in lines.items():
        pts = sorted(points, key=lambda p: p[0])
        stats = [s for _, s in pts]
        xs, means = [float(x) for x, _ in pts], [s["mean"] for s in stats]
        line = ax.errorbar(xs, means, yerr=interval_errors(stats), marker="o", capsize=3, label=label)
        for x, s in zip(xs, stats):
            ax.scatter([x] * len(s["values"]), s["values"], s=8, color=line[0].get_color(), alpha=0.6)
        shown += stats
    for i, (label, s) in enumerate(flat.items()):
        color = f"C{(len(lines) + i) % 10}"
        ax.axhline(s["mean"], color=color, linestyle="--", label=f"{label} (any context)")
        if s.get("ci_low") is not None:
            ax.axhspan(s["ci_low"], s["ci_high"], color=color, alpha=0.15)
        shown.append(s)
    if (lim := axis_limits(axis_values(shown), metric_bounds("perplexity"), pad=0.15)) is not None:
        ax.set_ylim(*lim)
    ax.set_xlabel("n-gram order N (context = N-1 words)")
    ax.set_ylabel(ylabel)
    _title(ax, f"{title}\n{interval_note(shown, 'whiskers and bands')}; dots: seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def grouped_bars(groups: Mapping[str, Mapping[str, Mapping]], path: Path, ylabel: str, title: str = "") -> Path:
    """Bars per variant, one colour per group (e.g. all tokens vs out-of-vocabulary): the mean, its 95% interval
    as whiskers, seeds as dots; the title says what the whiskers are.

    groups: group label -> variant -> summary (`mean`; `ci_low`/`ci_high`, `values` and `n` when over seeds: a
    bare {"mean"}, e.g. a known true value, gets no whisker). The axis stays inside `metric_bounds(ylabel)`.
    """
    variants = list(dict.fromkeys(v for g in groups.values() for v in g))
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(variants) + 2), 4.5))
    for gi, (glabel, stats) in enumerate(groups.items()):
        xs = np.arange(len(variants)) + (gi - (len(groups) - 1) / 2) * width
        at = [x for x, v in zip(xs, variants) if v in stats]
        drawn = [stats[v] for v in variants if v in stats]
        means = [s["mean"] for s in drawn]
        ax.bar(at, means, width, label=glabel)
        ax.errorbar(at, means, yerr=interval_errors(drawn), fmt="none", ecolor="black", capsize=3, lw=1)
        for x, s in zip(at, drawn):
            vals = s.get("values", [])
            ax.scatter([x] * len(vals), vals, color="black", s=8, zorder=3)
    ax.set_xticks(range(len(variants)), variants, rotation=20, ha="right", fontsize=8)
    every = [s for g in groups.values() for s in g.values()]
    if (lim := axis_limits(axis_values(every), metric_bounds(ylabel), pad=0.3)) is not None:
        ax.set_ylim(*lim)
    ax.set_ylabel(ylabel)
    _title(ax, f"{title}\n{interval_note(every)}; dots: seeds")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def image_grids(panels: Mapping[str, np.ndarray], path: Path, title: str = "", ncol: int = 8) -> Path:
    """One grid of images per panel (e.g. samples per variant). Each panel: (N, C, H, W) in [0, 1]."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (label, imgs) in zip(axes[0], panels.items()):
        imgs = np.asarray(imgs, dtype=float).clip(0, 1)
        n, c, h, w = imgs.shape
        rows = -(-n // ncol)
        canvas = np.full((rows * (h + 1) + 1, ncol * (w + 1) + 1, c), 0.5)
        for i in range(n):
            r, k = divmod(i, ncol)
            canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = imgs[i].transpose(
                1, 2, 0
            )
        ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def latent_scatter(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "") -> Path:
    """2-D codes coloured by class label, one panel per model. Each panel: (points (N, 2), labels (N,))."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.4), squeeze=False)
    for ax, (label, (xy, y)) in zip(axes[0], panels.items()):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10", vmin=0, vmax=9, s=6, alpha=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("dim 1")
        ax.set_ylabel("dim 2")
        ax.legend(*sc.legend_elements(), title="class", fontsize=6, title_fontsize=7, loc="best", markerscale=0.8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
