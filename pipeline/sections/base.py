"""What a report section is: a function of a `Context` that returns a `Result`, registered by name.

A study names its sections in its spec's `report:` list; `check_sections` validates those names (the report
stage and the CLI call it before any work), and the generic report (`pipeline.report`) runs each one. The
generic report knows no study: everything study-specific lives in a section module of this package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.runs import Run
from pipeline.trained import ModelLoader


@dataclass
class Context:
    study: str
    runs: list[Run]  # results/<study>/runs.json
    sweep: dict[str, Any]  # results/<study>/sweep.json (tracking_uri, experiment_id, parent_run_id, ...)
    analysis: dict[str, Any]  # pipeline.report.analysis.analyze output
    out_dir: Path  # the report folder; figures go under out_dir / "figures", tables under out_dir / "tables"
    data_dir: Path | None = None  # prepared data folder, for sections that re-evaluate a model

    @cached_property
    def loader(self) -> ModelLoader:
        """Loads a run's model with its best weights (one loader per report, so data sets are read once)."""
        return ModelLoader(self.sweep.get("tracking_uri"), self.data_dir)


@dataclass
class Result:
    sentences: list[str] = field(default_factory=list)  # appended to the study's answer
    figures: list[Path] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)  # merged into analysis.json under "extras"


Section = Callable[[Context], Result]
SECTIONS: dict[str, Section] = {}


def register_section(name: str) -> Callable[[Section], Section]:
    """Decorator: file a section under `name` (a name registered twice is a programming error)."""

    def deco(fn: Section) -> Section:
        if name in SECTIONS:
            raise ValueError(f"report section {name!r} registered twice")
        SECTIONS[name] = fn
        return fn

    return deco


def get_section(name: str) -> Section:
    """The section registered as `name`, else a ConfigError listing the allowed names."""
    if name not in SECTIONS:
        raise ConfigError(
            f"unknown report section {name!r}; allowed: {', '.join(sorted(SECTIONS)) or 'none'}", key="report"
        )
    return SECTIONS[name]


def list_sections() -> list[str]:
    """Every registered section name, sorted."""
    return sorted(SECTIONS)


def check_sections(names: Sequence[str], file: str | None = None) -> None:
    """Every name in a study's `report:` list is a registered section, else a ConfigError at `report.<i>`."""
    for i, name in enumerate(names):
        if name not in SECTIONS:
            allowed = ", ".join(sorted(SECTIONS)) or "none"
            raise ConfigError(f"unknown report section {name!r}; allowed: {allowed}", file=file, key=f"report.{i}")
