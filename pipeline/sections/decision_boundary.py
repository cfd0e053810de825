"""Logistic-regression study: each variant's accuracy and log-loss beside the Bayes classifier of the two-Gaussian
problem, and one run's learned boundary against the Bayes boundary."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pipeline import plots
from pipeline.data import Splits
from pipeline.runs import Run, best_run, by_variant, final, ok_runs, variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, decided_by, describe, stat


def bayes_reference(data: Splits) -> dict[str, float] | None:
    """The Bayes classifier of the two-Gaussian problem on the test split: its accuracy and log-loss.

    With means ±m and isotropic noise s the posterior log-odds are 2 m·x / s², linear in x.
    """
    means, s = data.meta.get("class_means"), data.meta.get("noise_std")
    if not means or not s:
        return None
    mu0, mu1 = torch.tensor(means[0]), torch.tensor(means[1])
    w = (mu1 - mu0) / s**2
    b = float((mu0 @ mu0 - mu1 @ mu1) / (2 * s**2))
    x, y = data.x_test.double(), data.y_test.view(-1).double()
    logits = x @ w.double() + b
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    acc = ((logits > 0).double() == y).double().mean()
    return {"accuracy": float(acc), "log_loss": float(loss), "w0": float(w[0]), "w1": float(w[1]), "b": b}


def boundary_angle(w: Sequence[float], reference: Sequence[float]) -> float:
    """Angle in degrees between two boundary normals (0 = parallel boundaries)."""
    u = np.asarray(w, dtype=float) / np.linalg.norm(w)
    v = np.asarray(reference, dtype=float) / np.linalg.norm(reference)
    v = v if u @ v >= 0 else -v  # a boundary's normal has no sign
    # 2·atan2(|u−v|, |u+v|) is exact near 0°, where acos of a dot product loses half its digits
    return math.degrees(2 * math.atan2(np.linalg.norm(u - v), np.linalg.norm(u + v)))


def _drawn_run(ctx: Context) -> Run | None:
    """The run the figure draws: the headline table's first variant's run with the best metric (a choice of
    picture, not a finding)."""
    ranking = ctx.analysis.get("ranking") or []
    if not ranking:
        return None
    return best_run(ctx.runs, ranking[0]["variant"], ctx.analysis["metric"], ctx.analysis["mode"])


@register_section("decision_boundary")
def decision_boundary(ctx: Context) -> Result:
    """Accuracy and log-loss per variant beside the Bayes classifier's, and one run's boundary plotted."""
    res = Result()
    by_v = by_variant(ok_runs(ctx.runs))
    rows = {
        v: {
            "test_accuracy": stat([final(r, "test_accuracy") for r in rs], "test_accuracy"),
            "test_log_loss": stat([final(r, "test_loss") for r in rs], "test_loss"),
            "val_log_loss": stat([final(r, "val_loss") for r in rs], "val_loss"),
        }
        for v, rs in by_v.items()
    }
    res.tables["variants"] = rows
    text = (
        "Per variant, test accuracy and test log-loss of each run's best-validation checkpoint "
        f"({DESCRIBED}): "
        + "; ".join(
            f"{v}: accuracy {describe(r['test_accuracy'])}, log-loss {describe(r['test_log_loss'])}"
            for v, r in rows.items()
        )
    )
    drawn = _drawn_run(ctx)
    trained = ctx.loader(drawn) if drawn else None
    if trained is None:
        res.sentences += [text + ".", "The decision boundary is not drawn: no model could be loaded."]
        return res
    bayes = bayes_reference(trained.data)
    if bayes:
        theory = trained.data.meta.get("bayes_accuracy")
        text += (
            f". For reference, the Bayes classifier on the same test points scores accuracy {bayes['accuracy']:.3f} "
            f"and log-loss {bayes['log_loss']:.3f}" + (f" (its expected accuracy is {theory:.3f})" if theory else "")
        )
    res.sentences.append(text + ".")
    v = variant(drawn)

    model = trained.model
    data = trained.data
    x = data.x_test.numpy()
    y = data.y_test.view(-1).numpy()
    lo, hi = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    with torch.no_grad():
        zz = model(torch.tensor(np.c_[xx.ravel(), yy.ravel()], dtype=torch.float32)).view(xx.shape).numpy()
    lines = {}
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if bayes:
        lines["Bayes boundary"] = (bayes["w0"], bayes["w1"], bayes["b"])
    if len(linear) == 1 and linear[0].weight.shape == (1, 2):
        w = linear[0].weight.detach().view(-1).tolist()
        b = float(linear[0].bias.detach()) if linear[0].bias is not None else 0.0
        res.tables["learned_boundary"] = {"w": w, "b": b, "run_id": drawn["run_id"]}
        if bayes:
            angle = boundary_angle(w, (bayes["w0"], bayes["w1"]))
            # signed distances of the two lines from the origin, along their own normals
            offset = -b / np.linalg.norm(w) + bayes["b"] / np.linalg.norm([bayes["w0"], bayes["w1"]])
            offset = round(float(offset), 2) + 0.0  # + 0.0 turns -0.0 into 0.0 for the text
            scale = np.linalg.norm(w) / np.linalg.norm([bayes["w0"], bayes["w1"]])
            res.tables["learned_boundary"].update({"angle_deg": angle, "offset": offset, "norm_ratio": scale})
            res.sentences.append(
                f"The boundary drawn, of {v} seed {drawn['tags'].get('seed')}, is {w[0]:.2f}·x0 + {w[1]:.2f}·x1 + "
                f"{b:.2f} = 0: at {angle:.1f}° to the Bayes boundary and shifted by {offset:+.2f} from it; its weights "
                f"are {scale:.2f}× the Bayes posterior's, so its probabilities are "
                f"{'less' if scale < 1 else 'more'} confident than the true ones."
            )
    res.sentences.append(decided_by(ctx, ctx.analysis["metric"], "test_accuracy", "test_loss"))
    res.figures.append(
        plots.decision_boundary(
            x,
            y,
            (xx, yy, zz),
            ctx.out_dir / "figures" / "decision_boundary.png",
            f"{ctx.study}: {v} seed {drawn['tags'].get('seed')} on the test split",
            lines=lines,
        )
    )
    return res
