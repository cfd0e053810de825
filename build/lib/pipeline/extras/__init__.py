"""Study-specific report sections, named in a study spec's `report:` list.

Each module of this package registers its sections; import it at the bottom of this file.

An extra gets the exported runs and the report folder, and returns generated sentences (appended to the
study's answer) and the figures it wrote. Register with `@register_extra("name")`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


@dataclass
class ExtraContext:
    study: str
    runs: list[dict[str, Any]]  # results/<study>/runs.json
    sweep: dict[str, Any]  # results/<study>/sweep.json (tracking_uri, experiment_id, parent_run_id, ...)
    analysis: dict[str, Any]  # pipeline.report.analyze output
    out_dir: Path  # the report folder; write figures under out_dir / "figures", tables under out_dir / "tables"
    data_dir: Path | None = None  # prepared data folder, for extras that re-evaluate a model


@dataclass
class ExtraResult:
    sentences: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)  # merged into analysis.json under "extras"


Extra = Callable[[ExtraContext], ExtraResult]
EXTRAS: dict[str, Extra] = {}


def register_extra(name: str) -> Callable[[Extra], Extra]:
    def deco(fn: Extra) -> Extra:
        if name in EXTRAS:
            raise ValueError(f"report extra {name!r} registered twice")
        EXTRAS[name] = fn
        return fn

    return deco


def get_extra(name: str) -> Extra:
    if name not in EXTRAS:
        raise ConfigError(
            f"unknown report section {name!r}; allowed: {', '.join(sorted(EXTRAS)) or 'none'}", key="report"
        )
    return EXTRAS[name]


def list_extras() -> list[str]:
    return sorted(EXTRAS)


from pipeline.extras import (
    classic,  # noqa: E402,F401  (sections of the classic-family studies)
    generative,  # noqa: E402,F401  (sample quality, latent space)
    language,  # noqa: E402,F401  (perplexity, embedding neighbours, OOV accuracy, sentiment breakdown)
)
