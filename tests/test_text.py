"""Text data (grammar corpus, vocabulary, file loaders), the language families and tasks, and the three
language studies end to end in the tiny profile."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from pipeline.data import DATASETS, prepare
from pipeline.data.base import LoadContext
from pipeline.data.text import (
    BOS_INDEX,
    EOS_INDEX,
    GRAMMAR_TAGS,
    PAD_INDEX,
    UNK_INDEX,
    Grammar,
    Vocab,
    is_negator,
    read_conllu,
    read_labelled,
    tokenize,
)
from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.models import MODELS, build_model
from pipeline.tasks import task_for

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TEXT = SHARED / "text"
needs_text = pytest.mark.skipif(
    not TEXT.is_dir(), reason=f"real data folder {TEXT} is absent (it sits beside the repo)"
)
TEXT_FAMILIES = ["ngram_lm", "lstm_lm", "lstm_tagger", "rnn_sentiment", "bag_of_embeddings"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def ctx(root: Path = SHARED, seed: int = 0) -> LoadContext:
    return LoadContext(seed=seed, root=root, download=False)


# --------------------------------------------------------------------------- the grammar


def _lexicon_polarity(g: Grammar) -> dict[str, int]:
    pol = {w: p for p, words in g.adjectives.items() for w in words}
    for table in (g.transitive, g.intransitive):
        for p, verbs in table.items():
            for v in verbs:
                for form in (v, v + "s", v + "es", v[:-1] + "ies", v + "d", v + "ed", v[:-1] + "ied"):
                    pol.setdefault(form, p)
    return pol


def _clause_score(words: list[str], tags: list[str], pol: dict[str, int]) -> int:
    """The documented rule, recomputed from the tokens: subject + VP, the VP flipped by 'not'."""
    verb = next(i for i, t in enumerate(tags) if t in ("VERB", "AUX"))
    subject = sum(pol.get(w, 0) for w, t in zip(words[:verb], tags[:verb]) if t == "ADJ")
    vp = sum(pol.get(w, 0) for w, t in zip(words[verb:], tags[verb:]) if t in ("ADJ", "VERB"))
    return subject + (-vp if "not" in words[verb:] else vp)


def test_grammar_is_deterministic_for_a_seed() -> None:
    a = Grammar().corpus(200, seed=5)
    b = Grammar().corpus(200, seed=5)
    assert [s.words for s in a] == [s.words for s in b] and [s.tags for s in a] == [s.tags for s in b]
    assert [s.words for s in Grammar().corpus(200, seed=6)] != [s.words for s in a]
    # the lexicon is fixed; only the sentences depend on the seed
    assert Grammar().nouns == Grammar().nouns


def test_grammar_gold_tags() -> None:
    g = Grammar()
    sents = g.corpus(500, seed=0)
    for s in sents:
        assert len(s.words) == len(s.tags) and set(s.tags) <= set(GRAMMAR_TAGS)
        assert s.tags[-1] == "PUNCT"
        for i, (w, t) in enumerate(zip(s.words, s.tags)):
            if w == "not":
                assert t == "PART" and s.tags[i - 1] == "AUX" and s.words[i - 1] in ("does", "did")
                assert s.tags[i + 1] == "VERB"  # a base form: does not like / did not cry
                assert s.words[i + 1] in {
                    v for tbl in (g.transitive, g.intransitive) for vs in tbl.values() for v in vs
                }
            if w in g.determiners:
                assert t == "DET"
            if t == "PROPN":
                assert w[0].isupper()
    tags = {t for s in sents for t in s.tags}
    assert tags == set(GRAMMAR_TAGS)
    # "walk" is a noun after a determiner and a verb after "not": context decides
    pairs = {(s.words[i], s.tags[i]) for s in g.corpus(3000, seed=1) for i in range(len(s.words))}
    assert {("walk", "NOUN"), ("walk", "VERB")} <= pairs


def test_grammar_sentiment_follows_the_documented_rule() -> None:
    g = Grammar()
    pol = _lexicon_polarity(g)
    sents = g.corpus(1500, seed=0)
    checked = negated = contrasts = 0
    for s in sents:
        words, tags = s.words[:-1], s.tags[:-1]  # without the final punctuation
        if "," in words:  # "X, and Y" adds up; in "X, but Y" the second clause decides unless it scores 0
            i = words.index(",")
            first, second = _clause_score(words[:i], tags[:i], pol), _clause_score(words[i + 2 :], tags[i + 2 :], pol)
            expected = first + second if words[i + 1] == "and" else (second or first)
            contrasts += words[i + 1] == "but" and second != 0 and first != 0
        else:
            expected = _clause_score(words, tags, pol)
        assert s.score == expected, s.words
        checked += 1
        negated += "not" in s.words
    assert checked == 1500 and negated > 300 and contrasts > 20
    data = DATASETS.build("grammar_sentiment", {"n_sentences": 400}, ctx())
    assert set(data.y_train.tolist()) == {0, 1}
    assert data.info.extra["classes"] == ["negative", "positive"]
    balance = data.y_train.float().mean().item()
    assert 0.35 < balance < 0.65


def test_negation_flips_the_label() -> None:
    g = Grammar()
    r = random.Random(0)
    found = 0
    for _ in range(5000):
        s = g.sentence(r)
        if "not" in s.words and "," not in s.words and s.score != 0:
            # remove the negation: the verb phrase's polarity, and so the sign of a VP-only sentence, flips
            i = s.words.index("not")
            pol = _lexicon_polarity(g)
            words, tags = s.words[: i - 1] + s.words[i + 1 :], s.tags[: i - 1] + s.tags[i + 1 :]
            subject = sum(pol.get(w, 0) for w, t in zip(words[: i - 1], tags[: i - 1]) if t == "ADJ")
            if subject == 0:
                assert _clause_score(words, tags, pol) == -s.score
                found += 1
    assert found > 50


# --------------------------------------------------------------------------- vocabulary and tensors


def test_vocab_built_on_training_tokens_with_min_freq_and_cap() -> None:
    train = [["a", "b", "a"], ["c", "a", "b"], ["d"]]
    v = Vocab.build(train, min_freq=2)
    assert v.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and v.itos[4:] == ["a", "b"]
    assert v.encode(["a", "c", "zzz"]) == [4, UNK_INDEX, UNK_INDEX]
    assert Vocab.build(train, min_freq=1, max_size=6).itos[4:] == ["a", "b"]  # most frequent first
    assert Vocab.build(train, min_freq=1).itos[4:] == ["a", "b", "c", "d"]  # ties by the token
    s = Vocab.build(train, min_freq=2).summary()
    assert s["size"] == 6 and s["min_freq"] == 2 and s["top"][0] == ["a", 3] and s["train_tokens"] == 7


def test_vocabulary_comes_from_the_training_split_only() -> None:
    data = DATASETS.build("grammar_pos", {"n_sentences": 600}, ctx())
    vocab = data.info.extra["vocab"]
    assert len(vocab) == data.info.extra["vocab_size"] == data.meta["vocab"]["size"]
    assert vocab[PAD_INDEX] == "<pad>" and vocab[UNK_INDEX] == "<unk>"
    # Rebuild the split's words: every word id in validation that is not <unk> was seen >= min_freq times in train.
    train_words = data.x_train[..., 0]
    counts = torch.bincount(train_words[train_words != PAD_INDEX], minlength=len(vocab))
    val_ids = data.x_val[..., 0]
    known = val_ids[(val_ids != PAD_INDEX) & (val_ids != UNK_INDEX)]
    assert (counts[known] >= 2).all()
    # the OOV flag is exactly "the word became <unk>", on real tokens only
    real = data.y_val[..., 0] != -100
    assert torch.equal((data.y_val[..., 1] == 1), real & (val_ids == UNK_INDEX))
    assert (data.y_val[..., 1] == 1).sum() > 20  # the Zipfian tail leaves OOV words in validation
    # characters stay available for <unk> words
    unk_chars = data.x_val[..., 1:][val_ids == UNK_INDEX]
    assert (unk_chars != 0).sum(1).min() >= 3
    assert data.meta["oov_rate"]["val"] > 0 and json.dumps(data.meta)


def test_language_model_tensors_shift_by_one() -> None:
    data = DATASETS.build("grammar_lm", {"n_sentences": 100}, ctx())
    x, y = data.x_train, data.y_train
    assert (x[:, 0] == BOS_INDEX).all()
    real = y != -100
    lengths = real.sum(1)
    for i in range(len(x)):
        n = int(lengths[i])
        assert torch.equal(y[i, : n - 1], x[i, 1:n]) and y[i, n - 1] == EOS_INDEX
        assert (x[i, n:] == PAD_INDEX).all()
    assert data.info.task == "language_model" and data.info.num_classes == data.info.extra["vocab_size"]


def test_prepare_keeps_token_ids_and_stores_the_vocabulary(tmp_path: Path) -> None:
    path = prepare("grammar_sentiment", {"n_sentences": 100}, ctx(tmp_path), tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["normalization"] == {}
    assert meta["info"]["extra"]["vocab"][:2] == ["<pad>", "<unk>"] and meta["info"]["extra"]["normalize"] is False
    assert meta["meta"]["vocab"]["size"] == len(meta["info"]["extra"]["vocab"])
    t = torch.load(path, weights_only=True)
    assert t["x_train"].dtype == torch.long


def test_tokenize_and_negators() -> None:
    assert tokenize("Don't stop, KING's men!") == ["don't", "stop", ",", "king's", "men", "!"]
    assert tokenize("A\x85B", lowercase=False) == ["A", "B"]
    assert is_negator("wasn't") and is_negator("never") and not is_negator("note")


# --------------------------------------------------------------------------- real files


@needs_text
def test_conllu_reader_on_ud_english_ewt() -> None:
    train = read_conllu(TEXT / "pos" / "en_ewt-ud-train.conllu")
    dev = read_conllu(TEXT / "pos" / "en_ewt-ud-dev.conllu")
    assert len(train) == 12544 and sum(len(w) for w, _ in train) == 204577  # README / stats.xml
    assert len(dev) == 2001 and sum(len(w) for w, _ in dev) == 25147
    assert len({t for _, tags in train for t in tags}) == 17
    assert train[0][0][:4] == ["Al", "-", "Zaman", ":"] and train[0][1][:2] == ["PROPN", "PUNCT"]
    # multiword tokens ("didn't" = did + n't) appear as their parts only
    words = [w for ws, _ in dev for w in ws]
    assert "didn't" not in words and "n't" in words


@needs_text
def test_conllu_pos_dataset() -> None:
    data = DATASETS.build("conllu_pos", {"max_sentences": 300}, ctx())
    assert data.info.task == "tagging" and data.info.num_classes == len(data.info.extra["tags"]) <= 17
    assert data.x_train.shape[1:] == (40, 13) and data.y_train.shape[1:] == (40, 2)
    assert data.meta["oov_rate"]["test"] > 0.1  # 300 training sentences leave many test words unseen


@needs_text
def test_text_file_lm_on_tinyshakespeare() -> None:
    data = DATASETS.build("text_lm", {"max_lines": 500}, ctx())
    vocab = data.info.extra["vocab"]
    first = [vocab[i] for i in data.x_train[0].tolist() if i != PAD_INDEX]
    assert first == ["<bos>", "first", "citizen", ":"]  # contiguous split: training starts at the top
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 500
    assert data.meta["source"].endswith("tinyshakespeare.txt")


@needs_text
def test_tsv_reader_splits_on_newline_only() -> None:
    imdb = read_labelled(TEXT / "sentiment" / "imdb_labelled.txt", lowercase=True)
    assert len(imdb) == 1000  # U+0085 inside sentences must not split them
    assert sorted({y for _, y in imdb}) == ["0", "1"]
    data = DATASETS.build("tsv_sentiment", {}, ctx())
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 3000
    ys = torch.cat([data.y_train, data.y_val, data.y_test])
    assert torch.bincount(ys).tolist() == [1500, 1500]


def _one_line_error(err: pytest.ExceptionInfo, path: Path, line: int) -> None:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"line {line}" in msg


def test_malformed_conllu_names_file_and_line(tmp_path: Path) -> None:
    good = "# text = a b\n1\ta\ta\tDET\tDT\t_\t2\tdet\t_\t_\n2-3\tbc\t_\t_\t_\t_\t_\t_\t_\t_\n"
    good += "2\tb\tb\tNOUN\tNN\t_\t0\troot\t_\t_\n2.1\tx\tx\tNOUN\tNN\t_\t_\t_\t_\t_\n\n"
    p = tmp_path / "ok.conllu"
    p.write_text(good)
    assert read_conllu(p) == [(["a", "b"], ["DET", "NOUN"])]  # 2-3 and 2.1 skipped
    bad = tmp_path / "bad.conllu"
    bad.write_text(good + "1\tc\tc\tNOUN\tNN\t_\t0\n")
    with pytest.raises(ConfigError) as err:
        read_conllu(bad)
    _one_line_error(err, bad, 7)
    noid = tmp_path / "noid.conllu"
    noid.write_text("x\ta\ta\tDET\tDT\t_\t2\tdet\t_\t_\n")
    with pytest.raises(ConfigError, match="not an integer") as err:
        read_conllu(noid)
    _one_line_error(err, noid, 1)


def test_malformed_tsv_and_text_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "s.tsv"
    p.write_text("good movie\t1\nno tab here\n")
    with pytest.raises(ConfigError, match="TAB") as err:
        read_labelled(p, True)
    _one_line_error(err, p, 2)
    p.write_text("good movie\t1\nbad movie\tpositive\n")
    with pytest.raises(ConfigError, match="not an integer") as err:
        read_labelled(p, True)
    _one_line_error(err, p, 2)
    t = tmp_path / "t.txt"
    t.write_bytes(b"hello world\n" * 20 + b"caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8") as err:
        DATASETS.build("text_lm", {"path": str(t)}, ctx(tmp_path))
    _one_line_error(err, t, 21)
    with pytest.raises(ConfigError, match="not found") as err:
        DATASETS.build("tsv_sentiment", {"paths": ["missing.tsv"]}, ctx(tmp_path))
    assert str(tmp_path / "missing.tsv") in str(err.value)


# --------------------------------------------------------------------------- models and tasks


@pytest.fixture(scope="module")
def infos() -> dict[str, DataInfo]:
    c = ctx()
    return {
        "lm": DATASETS.build("grammar_lm", {"n_sentences": 200}, c).info,
        "pos": DATASETS.build("grammar_pos", {"n_sentences": 60}, c).info,
        "sent": DATASETS.build("grammar_sentiment", {"n_sentences": 60}, c).info,
    }


MODEL_CASES = [
    ("ngram_lm", {"n": 4}, "lm"),
    ("lstm_lm", {}, "lm"),
    ("lstm_tagger", {}, "pos"),
    ("lstm_tagger", {"char_features": True}, "pos"),
    ("lstm_tagger", {"char_features": True, "bidirectional": False}, "pos"),
    ("rnn_sentiment", {"cell": "lstm"}, "sent"),
    ("rnn_sentiment", {"cell": "gru", "bidirectional": True}, "sent"),
    ("bag_of_embeddings", {}, "sent"),
]


def _batch(kind: str, info: DataInfo) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    v = info.extra["vocab_size"]
    if kind == "pos":
        t, w = info.input_shape
        x = torch.zeros(3, t, w, dtype=torch.long)
        x[..., 0] = torch.randint(1, v, (3, t), generator=g)
        x[..., 1:6] = torch.randint(2, info.extra["char_vocab_size"], (3, t, 5), generator=g)
        x[1, 5:] = 0  # a shorter sentence: padding after position 5
        return x
    x = torch.randint(4, v, (3, info.input_shape[0]), generator=g)
    x[1, 6:] = PAD_INDEX
    return x


@pytest.mark.parametrize("name,opts,kind", MODEL_CASES, ids=[f"{n}-{k}-{i}" for i, (n, _, k) in enumerate(MODEL_CASES)])
def test_forward_backward_every_parameter_gets_a_gradient(name, opts, kind, infos) -> None:
    info = infos[kind]
    torch.manual_seed(0)
    model = build_model(name, opts, info)
    x = _batch(kind, info)
    out = model(x)
    expected = (3, info.input_shape[0], info.num_classes) if kind != "sent" else (3, info.num_classes)
    assert out.shape == expected and torch.isfinite(out).all()
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{pname} has a zero/non-finite gradient"
    assert model.embedding.weight.grad[PAD_INDEX].abs().sum() == 0  # padding never learns


def test_every_text_family_is_registered_with_tokens_input() -> None:
    for name in TEXT_FAMILIES:
        assert name in MODELS and MODELS.get(name).meta["inputs"] == "tokens"
    with pytest.raises(ConfigError, match="text data set"):
        build_model("ngram_lm", {}, DataInfo((1, 8, 8), 10))
    with pytest.raises(ConfigError, match="tagging"):
        build_model("lstm_tagger", {}, DataInfo((20,), 5, extra={"vocab_size": 10}))


@pytest.mark.parametrize("n", [2, 4])
def test_ngram_lm_sees_exactly_the_previous_n_minus_1_words(n: int, infos) -> None:
    torch.manual_seed(0)
    model = build_model("ngram_lm", {"n": n}, infos["lm"]).eval()
    x = torch.randint(4, 50, (1, 12))
    changed = x.clone()
    changed[0, 5] = 60
    diff = (model(x) - model(changed)).abs().sum(-1)[0]
    touched = (diff > 0).nonzero().flatten().tolist()
    assert touched == list(range(5, 5 + n - 1))  # the outputs whose window holds position 5


def test_lstm_lm_is_causal(infos) -> None:
    torch.manual_seed(0)
    model = build_model("lstm_lm", {}, infos["lm"]).eval()
    x = torch.randint(4, 50, (1, 12))
    changed = x.clone()
    changed[0, 7] = 60
    diff = (model(x) - model(changed)).abs().sum(-1)[0]
    assert (diff[:7] == 0).all() and (diff[7:] > 0).all()


def test_tagger_ignores_padding(infos) -> None:
    torch.manual_seed(0)
    model = build_model("lstm_tagger", {"char_features": True}, infos["pos"]).eval()
    x = _batch("pos", infos["pos"])[1:2]  # five real tokens, then padding
    wider = torch.cat([x, torch.zeros(1, 7, x.shape[2], dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(x)[0, :5], model(wider)[0, :5])


def test_tagging_task_reports_oov_accuracy() -> None:
    task = task_for("tagging")
    out = torch.full((1, 4, 3), -5.0)
    for t, k in enumerate([0, 1, 2, 0]):  # predictions 0 1 2 0
        out[0, t, k] = 5.0
    y = torch.tensor([[[0, 0], [1, 1], [0, 1], [-100, 0]]])  # gold 0 1 0 (pad); tokens 2 and 3 out of vocab
    sums = task.batch_sums(out, y)
    m = task.finalize({k: float(v) for k, v in sums.items()}, "val")
    assert m["val_accuracy"] == pytest.approx(2 / 3) and m["val_oov_accuracy"] == pytest.approx(1 / 2)
    assert m["val_oov_fraction"] == pytest.approx(2 / 3)


def test_language_model_perplexity_and_f1() -> None:
    lm = task_for("language_model")
    out = torch.zeros(2, 3, 5)  # uniform over 5 words: perplexity 5
    y = torch.tensor([[1, 2, -100], [3, -100, -100]])
    m = lm.finalize({k: float(v) for k, v in lm.batch_sums(out, y).items()}, "val")
    assert m["val_perplexity"] == pytest.approx(5.0, rel=1e-5)
    f1 = task_for("classification_f1")
    logits = torch.tensor([[2.0, 0], [2.0, 0], [0, 2.0], [0, 2.0]])  # predicts 0 0 1 1
    y = torch.tensor([0, 1, 1, 1])
    m = f1.finalize({k: float(v) for k, v in f1.batch_sums(logits, y).items()}, "val")
    # class 0: tp 1 fp 1 fn 0 -> 2/3; class 1: tp 2 fp 0 fn 1 -> 4/5
    assert m["val_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2) and m["val_accuracy"] == pytest.approx(0.75)


def test_char_features_learn_oov_tags_the_word_only_tagger_cannot(infos) -> None:
    """A short fit on the grammar: with characters, out-of-vocabulary words are tagged better."""
    from pipeline.config import TrainConfig
    from pipeline.train import fit

    data = DATASETS.build("grammar_pos", {"n_sentences": 800}, ctx())
    cfg = TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=0.01, diagnostics=False, checkpoint_every=0)
    acc = {}
    for chars in (False, True):
        torch.manual_seed(0)
        model = build_model("lstm_tagger", {"char_features": chars}, data.info)
        res = fit(model, data, task_for("tagging"), cfg, seed=0)
        acc[chars] = res.history[-1]["val_oov_accuracy"]
    assert acc[True] > acc[False] + 0.03, acc


# --------------------------------------------------------------------------- studies end to end


@pytest.mark.slow
def test_language_studies_tiny_profile_end_to_end(tmp_path: Path, ray_local) -> None:
    """language_model, pos_tagging and sentiment: prepare, sweep (real Ray + MLflow SQLite) and report."""
    from pipeline.config import load_params, load_study
    from pipeline.report.build import build_report
    from pipeline.sweep import run_study
    from tests.conftest import REPO, SERIAL_TRIALS, write_params

    studies = ["language_model", "pos_tagging", "sentiment"]
    params_path = write_params(tmp_path, studies=studies, **SERIAL_TRIALS)
    params = load_params(params_path)
    data_dir = tmp_path / "prepared"
    for name in params.studies:
        study = load_study(REPO / "experiments" / f"{name}.yaml", params, str(params_path))
        base = study.resolve({}, study.seeds[0]).dataset
        prepare(base.name, base.options, ctx(tmp_path / "raw"), data_dir)
        summary = run_study(study, data_dir, tmp_path / "results" / name)
        assert summary["errors"] == 0, name
        runs = json.loads((tmp_path / "results" / name / "runs.json").read_text())
        assert runs and all(r["status"] == "FINISHED" for r in runs)
        spec = study.spec
        out = tmp_path / "reports" / name
        rep = build_report(study, tmp_path / "results" / name, out, data_dir)
        answer = rep["analysis"]["answer"]
        assert (out / "summary.md").exists() and spec.metric in answer, answer
        if name == "language_model":
            assert all("val_perplexity" in r["history"] for r in runs)
            assert "Nearest neighbours" in answer and (out / "tables" / "embedding_neighbours.md").exists()
            assert (out / "figures" / "perplexity_by_n.png").exists()
            from mlflow import MlflowClient

            arts = {a.path for a in MlflowClient(summary["tracking_uri"]).list_artifacts(runs[0]["run_id"])}
            assert any(a.startswith("embedding_neighbours") for a in arts)
        elif name == "pos_tagging":
            assert all("test_oov_accuracy" in r["final"] for r in runs)
            assert "out-of-vocabulary" in answer and (out / "figures" / "oov_accuracy.png").exists()
        else:
            assert all("val_f1" in r["history"] for r in runs)
            assert "negation" in answer and (out / "figures" / "negation_accuracy.png").exists()


# --------------------------------------------------------------------------- embedding drift


def test_embedding_drift_and_neighbour_overlap_on_tiny_vectors() -> None:
    from pipeline.sections.embedding_neighbours import embedding_drift, nearest_neighbours, neighbour_overlap

    vocab = ["<pad>", "a", "b", "c", "d"]
    start = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert embedding_drift(start, start.clone()) == pytest.approx(0.0, abs=1e-7)  # padding row (zeros) skipped
    turned = start @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # every vector rotated by 90 degrees
    assert embedding_drift(start, turned) == pytest.approx(1.0, abs=1e-6)  # orthogonal to where it started
    assert embedding_drift(start, -start, rows=3) == pytest.approx(2.0)  # only the first 3 rows (a, b; pad left out)
    before = nearest_neighbours(start, vocab, ["a", "c"], k=1)
    assert before["a"][0][0] == "b" and before["c"][0][0] == "b"
    assert neighbour_overlap(before, nearest_neighbours(turned, vocab, ["a", "c"], k=1)) == 1.0  # a rotation keeps them
    moved = start.clone()
    moved[3] = torch.tensor([-0.9, 0.1])  # c now sits next to d
    after = nearest_neighbours(moved, vocab, ["a", "c"], k=1)
    assert after["c"][0][0] == "d" and neighbour_overlap(before, after) == 0.5


def test_neighbour_table_sets_trained_lists_beside_initial_ones() -> None:
    from pipeline.sections.embedding_neighbours import _block

    lines = _block("v", 0, {"dog": [["cat", 0.8]]}, {"dog": [["red", 0.3]]}, 0.42)
    assert "| **dog** | cat (0.80) | red (0.30) |" in lines and any("0.420" in line for line in lines)
