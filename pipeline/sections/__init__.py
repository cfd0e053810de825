"""Study-specific report sections, named in a study spec's `report:` list (see `base` for the contract).

One module per section, each registering itself with `@register_section("name")`. Every module is imported
here explicitly, so a section is registered whenever any part of this package is imported, never depending
on import order.
"""

from pipeline.sections import (
    architectures,
    capacity,
    clipping,
    decision_boundary,
    degradation,
    embedding_neighbours,
    generalization_gap,
    init_signal,
    latent_space,
    lm_perplexity,
    maxout_params,
    oov_accuracy,
    polynomial_fit,
    recurrent_params,
    sample_quality,
    sentiment_breakdown,
)
from pipeline.sections.base import (
    SECTIONS,
    Context,
    Result,
    Section,
    check_sections,
    get_section,
    list_sections,
    register_section,
)

__all__ = [
    "SECTIONS",
    "Context",
    "Result",
    "Section",
    "check_sections",
    "get_section",
    "list_sections",
    "register_section",
]
