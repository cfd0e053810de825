"""Activations study: how many more parameters a maxout MLP has than the plain MLPs of the same widths.

A maxout unit takes the max of 2 linear pieces, so a maxout hidden layer has twice the weights of a plain one of
the same width while the output layer is unchanged; the ratio is read from the runs' logged n_params, not assumed.
With the prepared data at hand it also counts each run's hidden layers alone (the built model less its output
layer), per seed, for the study's claims (`maxout_params.hidden_params`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pipeline.runs import by_variant, ok_runs, per_variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import logged_config, per_untrained_model
from pipeline.text import join


def _shapes(ctx: Context) -> dict[str, tuple[str | None, tuple[int, ...] | None]]:
    """variant -> (hidden activation, hidden widths), from its first ok run's logged config."""
    out = {}
    for v, rs in by_variant(ok_runs(ctx.runs)).items():
        cfg = logged_config(rs[0])
        if cfg is not None:
            hidden = cfg.model.options.get("hidden")
            out[v] = (cfg.model.options.get("activation"), tuple(hidden) if isinstance(hidden, list) else None)
    return out


def maxout_ratios(
    counts: dict[str, float], shapes: dict[str, tuple[str | None, tuple[int, ...] | None]]
) -> dict[str, dict[str, Any]]:
    """Per maxout variant: its parameter count, its hidden widths, and its count over each plain variant's
    count at the same widths (variants with no plain counterpart are left out)."""
    out: dict[str, dict[str, Any]] = {}
    for m, (activation, hidden) in shapes.items():
        if activation != "maxout" or m not in counts or hidden is None:
            continue
        plain = {v: counts[v] for v, (a, h) in shapes.items() if a != "maxout" and h == hidden and v in counts}
        if plain:
            out[m] = {
                "n_params": counts[m],
                "hidden": list(hidden),
                "plain_n_params": plain,
                "ratio": {v: counts[m] / n for v, n in plain.items()},
            }
    return out


def maxout_sentence(rows: dict[str, dict[str, Any]]) -> str:
    """One sentence: each maxout variant's parameters against the plain variants' of the same widths."""
    if not rows:
        return "No maxout variant has a plain variant of the same widths to compare parameter counts with."
    parts = []
    for m, row in rows.items():
        plain, n = row["plain_n_params"], row["n_params"]
        if len(set(plain.values())) == 1:
            p = next(iter(plain.values()))
            text = f"{m} has {n:,.0f} parameters, {n / p:.2f}× the {p:,.0f} of {join(list(plain))}"
        else:
            text = f"{m} has {n:,.0f} parameters, " + join([f"{n / p:.2f}× {v}'s {p:,.0f}" for v, p in plain.items()])
        parts.append(text + f" at the same hidden widths {row['hidden']}")
    return (
        "A maxout unit takes the max of 2 linear pieces, so a maxout hidden layer has twice the weights of a plain "
        "one of the same width (the output layer is unchanged): " + "; ".join(parts) + "."
    )


def hidden_parameter_count(model: nn.Module) -> int:
    """Parameters of everything but the output layer (the last nn.Linear): an MLP's hidden layers."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = sum(p.numel() for p in linears[-1].parameters()) if linears else 0
    return sum(p.numel() for p in model.parameters()) - head


def hidden_params(ctx: Context) -> dict[str, list[float]]:
    """variant -> the hidden-layer parameter count of each ok run's built model, in seed order ({} without data)."""
    return per_untrained_model(ctx, hidden_parameter_count, keep=lambda cfg: cfg.model.name == "mlp")


@register_section("maxout_params")
def maxout_params(ctx: Context) -> Result:
    """The maxout variant's n_params over the same-width plain variants' n_params, from the runs."""
    counts = {v: sum(vals) / len(vals) for v, vals in per_variant(ctx.runs, "n_params").items()}
    rows = maxout_ratios(counts, _shapes(ctx))
    return Result([maxout_sentence(rows)], [], {"maxout": rows, "values": {"hidden_params": hidden_params(ctx)}})
