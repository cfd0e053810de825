"""Name -> builder registries, one per axis that varies (models, datasets, tasks), and the value types their
options share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt
from pydantic_core import PydanticCustomError

from pipeline.errors import ConfigError

T = TypeVar("T")

MAX_WIDTH = 65_536  # far above any study, low enough to catch a typo'd exponent
MAX_COUNT = 10**9


def _not_a_bool(value: Any) -> Any:
    # YAML's true and false are bools, which pydantic takes as 1 and 0 wherever a number is asked for
    if isinstance(value, bool):
        raise PydanticCustomError("bool_number", "a YAML boolean is not a number")
    return value


# A number that YAML's true cannot pass as; finite where the model's config says allow_inf_nan=False (Options do).
Float = Annotated[float, BeforeValidator(_not_a_bool)]
Width = Annotated[StrictInt, Field(ge=1, le=MAX_WIDTH)]  # units or channels of one layer
Count = Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)]  # layers, blocks, samples, parameters


class Options(BaseModel):
    """Base for a family's own options: unknown keys are errors, and so are YAML's .inf and .nan."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Entry(Generic[T]):
    def __init__(self, name: str, fn: Callable[..., T], options: type[Options], meta: dict[str, Any]):
        self.name = name
        self.fn = fn
        self.options = options
        self.meta = meta


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, options: type[Options] = Options, **meta: Any) -> Callable:
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, fn, options, meta)
            return fn

        return deco

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def build(self, name: str, options: Options | dict | None = None, *args: Any, **kwargs: Any) -> T:
        entry = self.get(name)
        if not isinstance(options, Options):
            options = entry.options.model_validate(options or {})
        return entry.fn(options, *args, **kwargs)
