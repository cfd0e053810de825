"""Model families. Every family module is imported here so registration never depends on import order."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from pipeline.datainfo import InputKind
from pipeline.registry import Options, Registry

MODELS: Registry[nn.Module] = Registry("model")

# What a family's `inputs` reads: the input kinds data sets declare (pipeline.data.register_dataset).
READS: dict[str, frozenset[InputKind]] = {
    "image": frozenset({"image", "unit_image"}),
    "vector": frozenset({"vector"}),
    "any": frozenset({"image", "unit_image", "vector"}),  # flattened
    "tokens": frozenset({"tokens"}),
    "generative": frozenset({"unit_image"}),  # pixels in [0, 1], the range of its Bernoulli decoder
}


def register_model(name: str, options: type[Options], *, inputs: str, task: str | None = None) -> Callable:
    """File a family under `name`: `inputs`, a key of READS, says which data it reads; `task` names the registered
    task it always trains with, whatever the data set's (a VAE's, a language model's); None: the data set's task."""
    if inputs not in READS:
        raise ValueError(f"model {name!r}: inputs {inputs!r} is not one of {', '.join(READS)}")
    return MODELS.register(name, options, inputs=inputs, task=task)


def build_model(name: str, options, info) -> nn.Module:
    return MODELS.build(name, options, info)


from pipeline.models import (
    cnn,  # noqa: E402,F401
    generative,  # noqa: E402,F401  (autoencoder, vae, gan)
    linear,  # noqa: E402,F401
    mlp,  # noqa: E402,F401
    rnn,  # noqa: E402,F401
    text,  # noqa: E402,F401  (ngram_lm, lstm_lm, lstm_tagger, rnn_sentiment, bag_of_embeddings)
)
