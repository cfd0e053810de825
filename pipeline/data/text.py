"""Text data sets: a seeded synthetic grammar corpus (embedded, offline) and real corpora read from files.

**The grammar corpus.** Sentences come from a small probabilistic grammar, so every token carries a gold
part-of-speech tag (Universal Dependencies UPOS names) and every sentence a gold sentiment label:

    S      -> CLAUSE PUNCT | CLAUSE , CCONJ CLAUSE PUNCT          (two clauses with p=0.25)
    CLAUSE -> NP VP
    NP     -> DET (ADV? ADJ)* NOUN? NOUN PP? | PROPN | PRON        (PRON only as a subject; 0-2 adjectives;
                                                                   a noun modifier with p=0.2)
    PP     -> ADP DET ADJ? NOUN                                    (p=0.15, one level deep)
    VP     -> VERB NP ADV? | VERB ADV?                             (transitive p=0.65)
            | AUX not VERB ...                                     (negated, p=0.3: "does not like", "did not cry")

Words are drawn per category with Zipfian frequencies: a core of real English words first (dog, happy,
loves, quickly, ...) and then a long tail of generated pseudo-words whose *suffix* marks the category
(-ness/-tion nouns, -ous/-ful adjectives, -ly adverbs, -ize/-ify verbs with -s/-ed inflections, capitalized
names). Rare tail words end up out of the training vocabulary, so a tagger can only get them right from
context or from their spelling. A few nouns are also verbs ("the walk" / "does not walk").
Sentiment: positive/negative adjectives and verbs score +1/-1; a clause scores subject + VP, where the VP
(verb and object) flips sign under negation; "X, and Y" scores X + Y, while in "X, but Y" the second clause
decides (Y, or X when Y scores 0). A sentence's label is 1 when its score is > 0 and 0 when < 0.
The sentiment set keeps only sentences with a non-zero score. The lexicon is fixed; the seed picks the
sentences, so a seed always gives the same corpus.

**Files.** Plain text (one sequence per non-empty line, word-level), CoNLL-U (UPOS column; multiword
`3-4` and empty-node `8.1` lines skipped) and `sentence<TAB>label` files (split on '\\n' only). Relative
paths are taken under `data.root`. A malformed line is a ConfigError naming the file and the line.

**Tokens.** Tokenized once here (in `prepare`). The vocabulary is built on the training split only:
tokens seen at least `min_freq` times, the most frequent `max_vocab` kept, ids 0..3 = <pad> <unk> <bos> <eos>.
It is stored in `DataInfo.extra["vocab"]` (so it lands in the prepared .json) and summarized in `Splits.meta`.

Tensor layouts (all int64, right-padded):
    language model  x (N, T) = <bos> w1..wk, y (N, T) = w1..wk <eos>, -100 on padding
    tagging         x (N, T, 1 + C): [..., 0] word id, [..., 1:] the word's character ids (0 = padding);
                    y (N, T, 2): [..., 0] tag id (-100 on padding), [..., 1] 1 where the word is out of vocabulary
    classification  x (N, T) word ids, y (N,) class ids
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import Field, StrictBool, StrictInt

from pipeline.data.base import LoadContext, Splits, register_dataset, split_indices
from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.registry import Float, Options

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_INDEX, UNK_INDEX, BOS_INDEX, EOS_INDEX = 0, 1, 2, 3
IGNORE = -100  # cross_entropy's ignore_index: padding targets never count

# --------------------------------------------------------------------------- the grammar


@dataclass(frozen=True)
class Token:
    text: str
    tag: str


@dataclass
class Sentence:
    tokens: list[Token]
    score: int  # sentiment: > 0 positive, < 0 negative, 0 neutral
    negated: bool = False

    @property
    def words(self) -> list[str]:
        return [t.text for t in self.tokens]

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tokens]


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _past(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


_ONSETS = "b br c d dr f g gl gr h k l m n p pl pr r s sk st t tr v w z".split()
_VOWELS = "a e i o u ai ea oo".split()
_CODAS = ["", "", "n", "r", "l", "m", "sk", "nd", "rk", "st"]
LEXICON_SEED = 20031  # the lexicon is part of the grammar: fixed, whatever the data seed


class Grammar:
    """The lexicon and the rules above; `sentence(rng)` draws one sentence."""

    def __init__(self, tail: int = 400):
        r = random.Random(LEXICON_SEED)
        taken: set[str] = set()

        def roots(n: int) -> list[str]:
            out = []
            while len(out) < n:
                s = "".join(r.choice(_ONSETS) + r.choice(_VOWELS) + r.choice(_CODAS) for _ in range(r.choice((1, 2))))
                if len(s) >= 3 and s not in taken:
                    taken.add(s)
                    out.append(s)
            return out

        def derive(n: int, suffixes: Sequence[str]) -> list[str]:
            words = []
            for root in roots(n):
                w = root + r.choice(suffixes)
                if w not in taken:
                    taken.add(w)
                    words.append(w)
            return words

        real_nouns = (
            "dog cat bird child teacher farmer king queen doctor river garden city house book song "
            "story friend neighbour robot village"
        ).split()
        self.verb_nouns = "walk visit smile fear watch help".split()  # also verbs: context decides the tag
        taken.update(real_nouns + self.verb_nouns)
        self.nouns = real_nouns + self.verb_nouns + derive(tail, ["er", "ness", "tion", "ment", "ity", "ship"])
        self.names = "Alice Bob Carol Dave Erin Frank Grace Heidi".split() + [w.capitalize() for w in roots(tail // 3)]
        self.adjectives = {
            1: "good happy kind brave lovely wonderful gentle clever bright friendly".split(),
            -1: "bad sad cruel lazy awful nasty angry boring rude dull".split(),
            0: "red big small old young tall green quiet wooden round".split(),
        }
        taken.update(w for ws in self.adjectives.values() for w in ws)
        generated_adj = derive(tail, ["ous", "ful", "ive", "able", "ish", "ic"])
        self.adjectives[0] = self.adjectives[0] + generated_adj
        # adverbs share their roots with adjectives: the -ly suffix is the tell
        self.adverbs = "quickly slowly quietly often rarely carefully loudly again".split() + [
            a + "ly" for a in generated_adj[: tail // 2]
        ]
        self.intensifiers = ["very", "really", "quite"]
        self.transitive = {
            1: "love like help praise admire thank trust welcome".split(),
            -1: "hate blame ignore attack insult dislike annoy scold".split(),
            0: "watch visit follow call push carry paint count".split()
            + derive(tail // 2, ["ize", "ate", "ify", "en"]),
        }
        self.intransitive = {
            1: "smile laugh dance cheer".split(),
            -1: "cry complain shout frown".split(),
            0: "walk wait arrive rest jump stay".split(),
        }
        self.determiners = "the a every this that some my our".split()
        self.pronouns = "she he it someone".split()
        self.prepositions = "with near under behind beside from for".split()

    # ---- drawing

    @staticmethod
    def _zipf(r: random.Random, words: Sequence[str], s: float = 1.1) -> str:
        cum = _zipf_cumulative(len(words), s)
        return words[min(bisect.bisect_left(cum, r.random() * cum[-1]), len(words) - 1)]

    @staticmethod
    def _polarity(r: random.Random) -> int:
        u = r.random()
        return 1 if u < 0.25 else (-1 if u < 0.5 else 0)

    def _adjectives(self, r: random.Random) -> tuple[list[Token], int]:
        out, pol = [], 0
        k = r.choices((0, 1, 2), weights=(0.5, 0.35, 0.15))[0]
        for _ in range(k):
            if r.random() < 0.15:
                out.append(Token(r.choice(self.intensifiers), "ADV"))
            p = self._polarity(r)
            out.append(Token(self._zipf(r, self.adjectives[p]), "ADJ"))
            pol += p
        return out, pol

    def _np(self, r: random.Random, subject: bool, depth: int = 0) -> tuple[list[Token], int]:
        u = r.random()
        if u < 0.15:
            return [Token(self._zipf(r, self.names), "PROPN")], 0
        if subject and u < 0.3:
            return [Token(r.choice(self.pronouns), "PRON")], 0
        toks = [Token(self._zipf(r, self.determiners, 0.8), "DET")]
        adjs, pol = self._adjectives(r)
        toks += adjs
        if r.random() < 0.2:  # a noun modifier ("the garden robot"): after a determiner, ADJ and NOUN both fit
            toks.append(Token(self._zipf(r, self.nouns), "NOUN"))
        toks.append(Token(self._zipf(r, self.nouns), "NOUN"))
        if depth == 0 and r.random() < 0.15:
            toks.append(Token(r.choice(self.prepositions), "ADP"))
            inner, inner_pol = self._np(r, subject=False, depth=1)
            toks += inner
            pol += inner_pol
        return toks, pol

    def _vp(self, r: random.Random) -> tuple[list[Token], int, bool]:
        past = r.random() < 0.4
        negated = r.random() < 0.3
        transitive = r.random() < 0.65
        p = self._polarity(r)
        verb = self._zipf(r, (self.transitive if transitive else self.intransitive)[p])
        if negated:
            toks = [Token("did" if past else "does", "AUX"), Token("not", "PART"), Token(verb, "VERB")]
        else:
            toks = [Token(_past(verb) if past else _third_person(verb), "VERB")]
        pol = p
        if transitive:
            obj, obj_pol = self._np(r, subject=False)
            toks += obj
            pol += obj_pol
        if r.random() < 0.25:
            toks.append(Token(self._zipf(r, self.adverbs), "ADV"))
        return toks, (-pol if negated else pol), negated

    def _clause(self, r: random.Random) -> tuple[list[Token], int, bool]:
        subj, pol = self._np(r, subject=True)
        vp, vp_pol, negated = self._vp(r)
        return subj + vp, pol + vp_pol, negated

    def sentence(self, r: random.Random) -> Sentence:
        toks, score, negated = self._clause(r)
        if r.random() < 0.25:
            more, more_score, more_neg = self._clause(r)
            conj = r.choice(("and", "but"))
            toks += [Token(",", "PUNCT"), Token(conj, "CCONJ"), *more]
            # "and" adds up; after "but" the second clause decides (when it has a polarity at all)
            score = score + more_score if conj == "and" else (more_score or score)
            negated = negated or more_neg
        toks.append(Token("!" if r.random() < 0.2 else ".", "PUNCT"))
        return Sentence(toks, score, negated)

    def corpus(self, n: int, seed: int, polar_only: bool = False) -> list[Sentence]:
        """`n` sentences, the same ones for the same seed; `polar_only` redraws sentences that score 0."""
        r = random.Random(seed)
        out: list[Sentence] = []
        while len(out) < n:
            s = self.sentence(r)
            if not polar_only or s.score != 0:
                out.append(s)
        return out


@functools.cache
def _zipf_cumulative(n: int, s: float) -> list[float]:
    """Cumulative weights 1/(rank+1)^s: Zipf's law within a word category."""
    return list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(n)))


GRAMMAR_TAGS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "NOUN", "PART", "PRON", "PROPN", "PUNCT", "VERB"]

# --------------------------------------------------------------------------- vocabulary


@dataclass
class Vocab:
    """Token <-> id, built on training tokens only; anything else maps to <unk>."""

    itos: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    min_freq: int = 1

    def __post_init__(self) -> None:
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = SPECIALS,
    ) -> Vocab:
        counts = Counter(t for seq in sequences for t in seq)
        # most frequent first, ties by the token itself, so the order is deterministic
        kept = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_freq]
        kept = [t for t in kept if t not in specials]
        if max_size is not None:
            kept = kept[: max(0, max_size - len(specials))]
        return cls(list(specials) + kept, dict(counts), min_freq)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, UNK_INDEX) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def summary(self, top: int = 20) -> dict:
        ranked = sorted(((c, t) for t, c in self.counts.items() if t in self.stoi), key=lambda ct: (-ct[0], ct[1]))
        return {
            "size": len(self),
            "min_freq": self.min_freq,
            "distinct_train_tokens": len(self.counts),
            "train_tokens": sum(self.counts.values()),
            "top": [[t, c] for c, t in ranked[:top]],
        }


def oov_rate(vocab: Vocab, sequences: Sequence[Sequence[str]]) -> float:
    n = sum(len(s) for s in sequences)
    return sum(t not in vocab for s in sequences for t in s) / n if n else 0.0


# --------------------------------------------------------------------------- tensors


def _pad(rows: Sequence[Sequence[int]], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r[:width], dtype=torch.long)
    return out


def lm_tensors(vocab: Vocab, seqs: Sequence[Sequence[str]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token prediction: x = <bos> w1..wk, y = w1..wk <eos> (sequences are cut to width - 1 words)."""
    ids = [vocab.encode(s[: width - 1]) for s in seqs]
    x = _pad([[BOS_INDEX, *r] for r in ids], width, PAD_INDEX)
    y = _pad([[*r, EOS_INDEX] for r in ids], width, IGNORE)
    return x, y


def char_matrix(word: str, chars: Vocab, width: int) -> list[int]:
    """A word's character ids; a word longer than `width` keeps its prefix and its suffix, the informative ends."""
    if len(word) > width:
        word = word[: width // 2] + word[len(word) - (width - width // 2) :]
    return chars.encode(list(word))


def tagging_tensors(
    vocab: Vocab, chars: Vocab, tags: Vocab, sents: Sequence[tuple[list[str], list[str]]], width: int, word_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    pad_word = [PAD_INDEX] * (1 + word_len)
    xs, ys = [], []
    for words, tg in sents:
        ids = vocab.encode(words)
        rows = [
            [wid, *(cm := char_matrix(w, chars, word_len)), *[PAD_INDEX] * (word_len - len(cm))]
            for w, wid in zip(words, ids)
        ]
        xs.append(rows + [pad_word] * (width - len(rows)))
        labels = [[tags.stoi[t], int(wid == UNK_INDEX)] for t, wid in zip(tg, ids)]
        ys.append(labels + [[IGNORE, 0]] * (width - len(labels)))
    shape = (0, width)
    x = torch.tensor(xs, dtype=torch.long) if xs else torch.zeros(*shape, 1 + word_len, dtype=torch.long)
    y = torch.tensor(ys, dtype=torch.long) if ys else torch.zeros(*shape, 2, dtype=torch.long)
    return x, y


def classification_tensors(
    vocab: Vocab, seqs: Sequence[Sequence[str]], labels: Sequence[int], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    return _pad([vocab.encode(s[:width]) for s in seqs], width, PAD_INDEX), torch.tensor(labels, dtype=torch.long)


def _chunks(words: list[str], tags: list[str], width: int) -> list[tuple[list[str], list[str]]]:
    # long sentences become several rows, so every token is scored
    return [(words[i : i + width], tags[i : i + width]) for i in range(0, len(words), width)]


def _width(seqs: Iterable[Sequence], cap: int, extra: int = 0) -> int:
    return max(1, min(cap, max((len(s) + extra for s in seqs), default=1)))


# --------------------------------------------------------------------------- options


class TextOptions(Options):
    min_freq: StrictInt = Field(1, ge=1)  # training-split count a token needs to enter the vocabulary
    max_vocab: StrictInt = Field(10_000, ge=8)  # including the 4 special tokens; bounds the stored vocabulary too
    max_len: StrictInt = Field(40, ge=2)  # tokens per row (longer rows are cut; tagging splits them instead)


class GrammarOptions(TextOptions):
    n_sentences: StrictInt = Field(3000, ge=20)
    val_fraction: Float = Field(0.15, gt=0, lt=0.5)
    test_fraction: Float = Field(0.15, gt=0, lt=0.5)
    # generated words per open category: the rare words that end up out of vocabulary
    tail: StrictInt = Field(400, ge=6)


class GrammarTaggingOptions(GrammarOptions):
    min_freq: StrictInt = Field(2, ge=1)  # words seen once become <unk>, so the word-only tagger learns what <unk> is
    max_word_len: StrictInt = Field(12, ge=2)  # characters kept per word


def _split_grammar(
    opts: GrammarOptions, ctx: LoadContext, polar_only: bool = False
) -> tuple[list[Sentence], list[Sentence], list[Sentence]]:
    sents = Grammar(opts.tail).corpus(opts.n_sentences, ctx.seed, polar_only=polar_only)
    tr, va, te = split_indices(len(sents), (opts.val_fraction, opts.test_fraction), ctx.seed)
    return [sents[i] for i in tr], [sents[i] for i in va], [sents[i] for i in te]


def _meta(
    source: str, vocab: Vocab, val: Sequence[Sequence[str]], test: Sequence[Sequence[str]], max_vocab: int, **more
) -> dict:
    """What `Splits.meta` records for every text set: the vocabulary's summary and the OOV rates."""
    return {
        "source": source,
        "vocab": {**vocab.summary(), "max_vocab": max_vocab},
        "oov_rate": {"val": round(oov_rate(vocab, val), 5), "test": round(oov_rate(vocab, test), 5)},
        **more,
    }


def _extra(vocab: Vocab, **more) -> dict:
    return {
        "normalize": False,
        "vocab_size": len(vocab),
        "pad_index": PAD_INDEX,
        "unk_index": UNK_INDEX,
        "bos_index": BOS_INDEX,
        "eos_index": EOS_INDEX,
        "vocab": list(vocab.itos),
        **more,
    }


# ---- language modelling


def lm_splits(
    train: list[list[str]], val: list[list[str]], test: list[list[str]], opts: TextOptions, source: str, **meta
) -> Splits:
    vocab = Vocab.build(train, opts.min_freq, opts.max_vocab)
    width = _width(train + val + test, opts.max_len, extra=1)
    tensors = [t for seqs in (train, val, test) for t in lm_tensors(vocab, seqs, width)]
    info = DataInfo((width,), len(vocab), task="language_model", extra=_extra(vocab))
    return Splits(
        *tensors, info, _meta(source, vocab, val, test, max_vocab=opts.max_vocab, sequences=len(train), **meta)
    )


@register_dataset("grammar_lm", GrammarOptions, inputs="tokens", task="language_model")
def load_grammar_lm(opts: GrammarOptions, ctx: LoadContext) -> Splits:
    """Grammar sentences for next-word prediction (sequence form; an n-gram model reads the last n-1 ids)."""
    tr, va, te = _split_grammar(opts, ctx)
    return lm_splits([s.words for s in tr], [s.words for s in va], [s.words for s in te], opts, "grammar")


# ---- tagging


def tagging_splits(
    train: list[tuple[list[str], list[str]]],
    val: list[tuple[list[str], list[str]]],
    test: list[tuple[list[str], list[str]]],
    opts: GrammarTaggingOptions | ConllOptions,
    source: str,
    tag_names: Sequence[str] | None = None,
    **meta,
) -> Splits:
    vocab = Vocab.build((w for w, _ in train), opts.min_freq, opts.max_vocab)
    chars = Vocab.build(([c for word in w for c in word] for w, _ in train), 1, None, specials=(PAD, UNK))
    tags = Vocab(list(tag_names or sorted({t for _, tg in train for t in tg})))
    rows = [[r for w, t in split for r in _chunks(w, t, opts.max_len)] for split in (train, val, test)]
    width = _width([w for split in rows for w, _ in split], opts.max_len)
    tensors = [t for split in rows for t in tagging_tensors(vocab, chars, tags, split, width, opts.max_word_len)]
    info = DataInfo(
        (width, 1 + opts.max_word_len),
        len(tags),
        task="tagging",
        extra=_extra(
            vocab,
            tags=list(tags.itos),
            char_vocab_size=len(chars),
            chars=list(chars.itos),
            max_word_len=opts.max_word_len,
        ),
    )
    val_words, test_words = [w for w, _ in val], [w for w, _ in test]
    return Splits(
        *tensors,
        info,
        _meta(source, vocab, val_words, test_words, max_vocab=opts.max_vocab, tags=list(tags.itos), **meta),
    )


@register_dataset("grammar_pos", GrammarTaggingOptions, inputs="tokens", task="tagging")
def load_grammar_pos(opts: GrammarTaggingOptions, ctx: LoadContext) -> Splits:
    """Grammar sentences with gold UPOS tags; y[..., 1] marks words outside the training vocabulary."""
    tr, va, te = _split_grammar(opts, ctx)
    pairs = [[(s.words, s.tags) for s in split] for split in (tr, va, te)]
    return tagging_splits(*pairs, opts, "grammar", GRAMMAR_TAGS)


# ---- sentence classification


def classification_splits(
    train: list[tuple[list[str], int]],
    val: list[tuple[list[str], int]],
    test: list[tuple[list[str], int]],
    opts: TextOptions,
    source: str,
    classes: Sequence[str],
    **meta,
) -> Splits:
    vocab = Vocab.build((w for w, _ in train), opts.min_freq, opts.max_vocab)
    width = _width([w for split in (train, val, test) for w, _ in split], opts.max_len)
    tensors = [
        t
        for split in (train, val, test)
        for t in classification_tensors(vocab, [w for w, _ in split], [y for _, y in split], width)
    ]
    info = DataInfo((width,), len(classes), extra=_extra(vocab, classes=list(classes)))
    counts = Counter(y for _, y in train)
    return Splits(
        *tensors,
        info,
        _meta(
            source,
            vocab,
            [w for w, _ in val],
            [w for w, _ in test],
            max_vocab=opts.max_vocab,
            classes=list(classes),
            train_class_counts=[counts.get(i, 0) for i in range(len(classes))],
            **meta,
        ),
    )


@register_dataset("grammar_sentiment", GrammarOptions, inputs="tokens", task="classification")
def load_grammar_sentiment(opts: GrammarOptions, ctx: LoadContext) -> Splits:
    """Grammar sentences with a non-zero sentiment score, labelled 1 (positive) or 0 (negative)."""
    tr, va, te = _split_grammar(opts, ctx, polar_only=True)
    pairs = [[(s.words, int(s.score > 0)) for s in split] for split in (tr, va, te)]
    negated = {name: sum(s.negated for s in split) for name, split in (("val", va), ("test", te))}
    return classification_splits(*pairs, opts, "grammar", ["negative", "positive"], negated_sentences=negated)


# --------------------------------------------------------------------------- files

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words (with inner apostrophes: don't, king's) and single punctuation marks."""
    return _TOKEN.findall(text.lower() if lowercase else text)


def resolve_path(path: str, ctx: LoadContext) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else ctx.root / p


def _read_lines(path: Path) -> list[str]:
    """The file's lines, split on '\\n' only (U+0085 and friends stay inside a line)."""
    if not path.is_file():
        raise ConfigError("file not found (relative paths are under data.root)", file=str(path))
    data = path.read_bytes()
    lines = data.split(b"\n")
    out = []
    for i, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise ConfigError(f"not UTF-8 text (byte {e.start} of the line)", file=str(path), key=f"line {i}") from None
    return out


class TextFileOptions(TextOptions):
    path: str = "text/tinyshakespeare.txt"  # under data.root unless absolute
    lowercase: StrictBool = True
    min_freq: StrictInt = Field(2, ge=1)
    max_lines: StrictInt | None = Field(None, ge=10)  # keep the first N non-empty lines (fast runs)
    val_fraction: Float = Field(0.1, gt=0, lt=0.5)
    test_fraction: Float = Field(0.1, gt=0, lt=0.5)


@register_dataset("text_lm", TextFileOptions, inputs="tokens", task="language_model")
def load_text_lm(opts: TextFileOptions, ctx: LoadContext) -> Splits:
    """A plain-text file for word-level language modelling: each non-empty line is one sequence. The split is
    contiguous (train first, then validation, then test), so the model is scored on text it has not seen."""
    path = resolve_path(opts.path, ctx)
    seqs = [tokenize(line, opts.lowercase) for line in _read_lines(path) if line.strip()]
    seqs = [s for s in seqs if s]
    if opts.max_lines:
        seqs = seqs[: opts.max_lines]
    if len(seqs) < 10:
        raise ConfigError(f"needs at least 10 non-empty lines, found {len(seqs)}", file=str(path))
    n_val, n_test = round(len(seqs) * opts.val_fraction), round(len(seqs) * opts.test_fraction)
    n_train = len(seqs) - n_val - n_test
    train, val, test = seqs[:n_train], seqs[n_train : n_train + n_val], seqs[n_train + n_val :]
    return lm_splits(train, val, test, opts, str(path))


def read_conllu(path: Path) -> list[tuple[list[str], list[str]]]:
    """(words, UPOS tags) per sentence. Comment lines, multiword ranges (3-4) and empty nodes (8.1) are skipped."""
    sents: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    lines = _read_lines(path)
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            if words:
                sents.append((words, tags))
                words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise ConfigError(f"expected 10 tab-separated columns, found {len(cols)}", file=str(path), key=f"line {i}")
        tid = cols[0]
        if "-" in tid or "." in tid:
            continue
        if not tid.isdigit():
            raise ConfigError(f"token id {tid!r} is not an integer", file=str(path), key=f"line {i}")
        if not cols[1] or not cols[3] or cols[3] == "_":
            raise ConfigError("empty FORM or UPOS column", file=str(path), key=f"line {i}")
        words.append(cols[1])
        tags.append(cols[3])
    if words:
        sents.append((words, tags))
    if not sents:
        raise ConfigError("no sentences found", file=str(path))
    return sents


class ConllOptions(TextOptions):
    train_path: str = "text/pos/en_ewt-ud-train.conllu"
    val_path: str = "text/pos/en_ewt-ud-dev.conllu"
    test_path: str = "text/pos/en_ewt-ud-test.conllu"
    min_freq: StrictInt = Field(2, ge=1)
    max_word_len: StrictInt = Field(12, ge=2)
    max_sentences: StrictInt | None = Field(None, ge=1)  # keep the first N sentences of each file (fast runs)


@register_dataset("conllu_pos", ConllOptions, inputs="tokens", task="tagging")
def load_conllu_pos(opts: ConllOptions, ctx: LoadContext) -> Splits:
    """Part-of-speech tagging from CoNLL-U files (the UPOS column); the tag set is the training file's."""
    splits = []
    for p in (opts.train_path, opts.val_path, opts.test_path):
        sents = read_conllu(resolve_path(p, ctx))
        splits.append(sents[: opts.max_sentences] if opts.max_sentences else sents)
    known = {t for _, tg in splits[0] for t in tg}
    for p, split in zip((opts.val_path, opts.test_path), splits[1:]):
        unseen = sorted({t for _, tg in split for t in tg} - known)
        if unseen:
            raise ConfigError(f"tags {unseen} do not occur in the training file", file=str(resolve_path(p, ctx)))
    return tagging_splits(*splits, opts, "conllu", files=[opts.train_path, opts.val_path, opts.test_path])


def read_labelled(path: Path, lowercase: bool) -> list[tuple[list[str], str]]:
    """`sentence<TAB>label` lines; blank lines are skipped."""
    out = []
    for i, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise ConfigError("expected sentence<TAB>label", file=str(path), key=f"line {i}")
        text, label = line.rsplit("\t", 1)
        label = label.strip()
        if not re.fullmatch(r"-?\d+", label):
            raise ConfigError(f"label {label!r} is not an integer", file=str(path), key=f"line {i}")
        out.append((tokenize(text, lowercase), label))
    if not out:
        raise ConfigError("no labelled lines found", file=str(path))
    return out


class TsvOptions(TextOptions):
    paths: list[str] = Field(
        default_factory=lambda: [
            "text/sentiment/amazon_cells_labelled.txt",
            "text/sentiment/imdb_labelled.txt",
            "text/sentiment/yelp_labelled.txt",
        ],
        min_length=1,
    )
    lowercase: StrictBool = True
    val_fraction: Float = Field(0.15, gt=0, lt=0.5)
    test_fraction: Float = Field(0.15, gt=0, lt=0.5)


@register_dataset("tsv_sentiment", TsvOptions, inputs="tokens", task="classification")
def load_tsv_sentiment(opts: TsvOptions, ctx: LoadContext) -> Splits:
    """Labelled sentences from `sentence<TAB>label` files, pooled and split at random (seeded)."""
    rows = [r for p in opts.paths for r in read_labelled(resolve_path(p, ctx), opts.lowercase)]
    labels = sorted({y for _, y in rows}, key=int)
    index = {y: i for i, y in enumerate(labels)}
    data = [(w, index[y]) for w, y in rows]
    tr, va, te = split_indices(len(data), (opts.val_fraction, opts.test_fraction), ctx.seed)
    pick = lambda idx: [data[i] for i in idx]  # noqa: E731
    negated = {
        name: sum(any(is_negator(t) for t in data[i][0]) for i in idx) for name, idx in (("val", va), ("test", te))
    }
    return classification_splits(
        pick(tr), pick(va), pick(te), opts, "tsv", labels, files=list(opts.paths), negated_sentences=negated
    )


NEGATORS = frozenset({"not", "no", "never", "nothing", "nobody", "none", "nor", "neither", "cannot"})


def is_negator(token: str) -> bool:
    """A negation word; contractions (don't, isn't, wasn't) count too."""
    t = token.lower()
    return t in NEGATORS or t.endswith("n't")
