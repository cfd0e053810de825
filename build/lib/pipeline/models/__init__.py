"""Model families. Every family module is imported here so registration never depends on import order."""

from __future__ import annotations

from torch import nn

from pipeline.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
register_model = MODELS.register


def build_model(name: str, options, info) -> nn.Module:
    return MODELS.build(name, options, info)


def list_models() -> list[str]:
    return MODELS.names()


from pipeline.models import (
    cnn,  # noqa: E402,F401
    generative,  # noqa: E402,F401  (autoencoder, vae, gan)
    linear,  # noqa: E402,F401
    mlp,  # noqa: E402,F401
    rnn,  # noqa: E402,F401
    text,  # noqa: E402,F401  (ngram_lm, lstm_lm, lstm_tagger, rnn_sentiment, bag_of_embeddings)
)
