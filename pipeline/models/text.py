"""Language families over token ids (pipeline/data/text.py): language models, a tagger, sentence classifiers.

Every family keeps its word embedding in `self.embedding` (row i = vocabulary id i), so a report can read
the learned vectors from a saved state dict. Padding id 0 embeds to zeros and never gets a gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictBool, StrictInt
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.models import register_model
from pipeline.registry import Count, Float, Options, Width

_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}


def _vocab(info: DataInfo, family: str) -> tuple[int, int]:
    if "vocab_size" not in info.extra:
        raise ConfigError(f"{family} needs a text data set (token ids with a vocabulary)", key="model")
    return int(info.extra["vocab_size"]), int(info.extra.get("pad_index", 0))


def _logits_at(out: nn.Linear, h: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits computed only where `real`; zeros at padding, whose targets are ignored anyway.

    The vocabulary-sized output layer is most of a language model's cost, and much of a padded batch is padding.
    """
    logits = h.new_zeros(*real.shape, out.out_features)
    logits[real] = out(h[real])
    return logits


def _run_packed(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `rnn` over right-padded sequences without reading the padding: (outputs, top layer's last states).

    Empty rows (length 0) are run as length 1 on their padding; callers ignore them.
    """
    packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
    directions = 2 if rnn.bidirectional else 1
    last = h[-directions:].transpose(0, 1).flatten(1)  # (batch, directions * hidden)
    return out, last


# --------------------------------------------------------------------------- language models

EMBEDDING_INIT_RANGE = 0.1  # U(-0.1, 0.1), as pytorch/examples' word_language_model initializes its encoder


def lm_embedding(vocab: int, dim: int, pad: int) -> nn.Embedding:
    """A language model's word embedding, small at initialization: torch's N(0, 1) default is so large that a
    short run barely moves a word from its random start, and its nearest neighbours stay those of the random
    vectors; from U(-0.1, 0.1) what a word's vector points to is what training put there."""
    emb = nn.Embedding(vocab, dim, padding_idx=pad)
    with torch.no_grad():
        emb.weight.uniform_(-EMBEDDING_INIT_RANGE, EMBEDDING_INIT_RANGE)
        emb.weight[pad].zero_()
    return emb


class NgramLMOptions(Options):
    n: StrictInt = Field(3, ge=2, le=16)  # the model conditions on the previous n-1 tokens
    embedding_dim: Width = 64
    hidden: Width = 128
    dropout: Float = Field(0.0, ge=0.0, lt=1.0)


class NgramLM(nn.Module):
    """Bengio et al. (2003): embed the previous n-1 words, concatenate, a tanh hidden layer, softmax.

    Applied at every position of a (batch, time) sequence at once: position t sees tokens t-n+2..t (the
    input at t is the previous word of the target at t), with padding before the start of the sequence.
    """

    def __init__(self, opts: NgramLMOptions, info: DataInfo):
        super().__init__()
        vocab, self.pad = _vocab(info, "ngram_lm")
        self.context = opts.n - 1
        self.embedding = lm_embedding(vocab, opts.embedding_dim, self.pad)
        self.hidden = nn.Sequential(
            nn.Linear(self.context * opts.embedding_dim, opts.hidden), nn.Tanh(), nn.Dropout(opts.dropout)
        )
        self.out = nn.Linear(opts.hidden, max(info.num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.context - 1, 0), value=self.pad)
        e = self.embedding(x)  # (B, T + n - 2, E)
        windows = e.unfold(1, self.context, 1)  # (B, T, E, n-1)
        windows = windows.transpose(2, 3).flatten(2)  # oldest word first: (B, T, (n-1) E)
        real = x[:, self.context - 1 :] != self.pad
        logits = windows.new_zeros(*real.shape, self.out.out_features)
        logits[real] = self.out(self.hidden(windows[real]))  # real positions only: most of a batch is padding
        return logits


class LSTMLMOptions(Options):
    embedding_dim: Width = 64
    hidden_size: Width = 128
    num_layers: Count = 1
    dropout: Float = Field(0.0, ge=0.0, lt=1.0)


class LSTMLM(nn.Module):
    """An LSTM over the whole sentence so far: unbounded context, where the n-gram model sees n-1 words."""

    def __init__(self, opts: LSTMLMOptions, info: DataInfo):
        super().__init__()
        vocab, pad = _vocab(info, "lstm_lm")
        self.embedding = lm_embedding(vocab, opts.embedding_dim, pad)
        self.rnn = nn.LSTM(
            opts.embedding_dim,
            opts.hidden_size,
            num_layers=opts.num_layers,
            batch_first=True,
            dropout=opts.dropout if opts.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(opts.dropout)
        self.out = nn.Linear(opts.hidden_size, max(info.num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Causal and right-padded: padding comes after every real token, so it cannot leak into a prediction.
        h, _ = self.rnn(self.embedding(x))
        return _logits_at(self.out, self.drop(h), x != self.embedding.padding_idx)


@register_model("ngram_lm", NgramLMOptions, task="language_model", inputs="tokens")
def build_ngram_lm(opts: NgramLMOptions, info: DataInfo) -> nn.Module:
    """Neural n-gram language model (Bengio et al. 2003)."""
    return NgramLM(opts, info)


@register_model("lstm_lm", LSTMLMOptions, task="language_model", inputs="tokens")
def build_lstm_lm(opts: LSTMLMOptions, info: DataInfo) -> nn.Module:
    """LSTM language model over the sentence so far."""
    return LSTMLM(opts, info)


# --------------------------------------------------------------------------- tagger


class TaggerOptions(Options):
    embedding_dim: Width = 64
    hidden_size: Width = 64
    bidirectional: StrictBool = True
    char_features: StrictBool = False  # add a character LSTM's summary of each word (its prefix and suffix)
    char_dim: Width = 16
    char_hidden: Width = 24
    dropout: Float = Field(0.0, ge=0.0, lt=1.0)


class LSTMTagger(nn.Module):
    """Word embedding (+ optional character-level BiLSTM per word) -> (Bi)LSTM over the sentence -> tag per token.

    Input (batch, time, 1 + C): word ids in [..., 0], each word's character ids in [..., 1:]. With
    `char_features`, an out-of-vocabulary word (<unk> to the embedding) is still seen through its spelling.
    """

    def __init__(self, opts: TaggerOptions, info: DataInfo):
        super().__init__()
        vocab, self.pad = _vocab(info, "lstm_tagger")
        if len(info.input_shape) != 2:
            raise ConfigError(
                f"lstm_tagger needs (time, 1 + chars) input from a tagging data set, got {tuple(info.input_shape)}",
                key="model",
            )
        self.embedding = nn.Embedding(vocab, opts.embedding_dim, padding_idx=self.pad)
        n_in = opts.embedding_dim
        self.char_features = opts.char_features
        if opts.char_features:
            n_chars = int(info.extra.get("char_vocab_size", 0))
            if n_chars < 2:
                raise ConfigError("char_features needs character ids (char_vocab_size) in the data", key="model")
            self.char_embedding = nn.Embedding(n_chars, opts.char_dim, padding_idx=0)
            self.char_rnn = nn.LSTM(opts.char_dim, opts.char_hidden, batch_first=True, bidirectional=True)
            n_in += 2 * opts.char_hidden
        self.drop = nn.Dropout(opts.dropout)
        self.rnn = nn.LSTM(n_in, opts.hidden_size, batch_first=True, bidirectional=opts.bidirectional)
        self.out = nn.Linear(opts.hidden_size * (2 if opts.bidirectional else 1), max(info.num_classes, 1))

    def _chars(self, chars: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B, T, C) character ids -> (B, T, 2 * char_hidden): the char BiLSTM's last states, real tokens only."""
        b, t, _ = chars.shape
        flat = chars[real]  # (n_real, C): padding tokens cost nothing
        summary = torch.zeros(b, t, 2 * self.char_rnn.hidden_size, device=chars.device)
        if len(flat):
            _, last = _run_packed(self.char_rnn, self.char_embedding(flat), (flat != 0).sum(1))
            summary[real] = last.to(summary.dtype)
        return summary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        words = x[..., 0]
        real = words != self.pad
        e = self.embedding(words)
        if self.char_features:
            e = torch.cat([e, self._chars(x[..., 1:], real)], dim=-1)
        h, _ = _run_packed(self.rnn, self.drop(e), real.sum(1))
        return self.out(self.drop(h))


@register_model("lstm_tagger", TaggerOptions, task="tagging", inputs="tokens")
def build_lstm_tagger(opts: TaggerOptions, info: DataInfo) -> nn.Module:
    """BiLSTM part-of-speech tagger, optionally with character features (Ling et al. 2015; Plank et al. 2016)."""
    return LSTMTagger(opts, info)


# --------------------------------------------------------------------------- sentence classifiers


class SentenceOptions(Options):
    embedding_dim: Width = 64
    hidden_size: Width = 64
    dropout: Float = Field(0.0, ge=0.0, lt=1.0)


class RNNSentimentOptions(SentenceOptions):
    cell: Literal["lstm", "gru"] = "lstm"
    bidirectional: StrictBool = False


class RNNSentiment(nn.Module):
    """Embedding -> LSTM/GRU -> the last state (after the last real token) -> linear classifier."""

    def __init__(self, opts: RNNSentimentOptions, info: DataInfo):
        super().__init__()
        vocab, self.pad = _vocab(info, "rnn_sentiment")
        self.embedding = nn.Embedding(vocab, opts.embedding_dim, padding_idx=self.pad)
        self.rnn = _CELLS[opts.cell](
            opts.embedding_dim, opts.hidden_size, batch_first=True, bidirectional=opts.bidirectional
        )
        self.drop = nn.Dropout(opts.dropout)
        self.out = nn.Linear(opts.hidden_size * (2 if opts.bidirectional else 1), max(info.num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = _run_packed(self.rnn, self.drop(self.embedding(x)), (x != self.pad).sum(1))
        return self.out(self.drop(last))


class BagOfEmbeddings(nn.Module):
    """The order-blind baseline: mean of the word embeddings -> one hidden layer -> linear classifier."""

    def __init__(self, opts: SentenceOptions, info: DataInfo):
        super().__init__()
        vocab, self.pad = _vocab(info, "bag_of_embeddings")
        self.embedding = nn.Embedding(vocab, opts.embedding_dim, padding_idx=self.pad)
        self.mlp = nn.Sequential(
            nn.Dropout(opts.dropout),
            nn.Linear(opts.embedding_dim, opts.hidden_size),
            nn.ReLU(),
            nn.Linear(opts.hidden_size, max(info.num_classes, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x != self.pad).unsqueeze(-1).float()
        mean = (self.embedding(x) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.mlp(mean)


@register_model("rnn_sentiment", RNNSentimentOptions, task="classification_f1", inputs="tokens")
def build_rnn_sentiment(opts: RNNSentimentOptions, info: DataInfo) -> nn.Module:
    """Recurrent sentence classifier (the last hidden state reads the whole sentence in order)."""
    return RNNSentiment(opts, info)


@register_model("bag_of_embeddings", SentenceOptions, task="classification_f1", inputs="tokens")
def build_bag_of_embeddings(opts: SentenceOptions, info: DataInfo) -> nn.Module:
    """Averaged word embeddings and an MLP: word order is invisible to it."""
    return BagOfEmbeddings(opts, info)
