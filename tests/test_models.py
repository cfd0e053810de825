"""Every registered model family: forward/backward on a tiny batch, plus family-specific contracts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.models import MODELS, READS, build_model
from pipeline.models.init import INIT_SCHEMES, apply_init
from pipeline.models.rnn import hidden_size_for_params, recurrent_parameter_count

INFOS = {
    "digits": DataInfo((1, 8, 8), 10),
    "mnist": DataInfo((1, 28, 28), 10),
    "cifar": DataInfo((3, 32, 32), 10),
    "vector": DataInfo((20,), 4),
}
# the input ranks each `register_model(..., inputs=...)` category takes here
RANKS = {"image": {3}, "vector": {1}, "any": {1, 3}, "tokens": set(), "generative": set()}
# "tokens" (text families) and "generative" (dict outputs) have their own forward/backward tests:
# tests/test_text.py and tests/test_generative.py


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # batches of 3 are too small to gain from intra-op threads; on a shared 2-core runner they only contend
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _cases() -> list:
    cases = []
    for name in MODELS.names():
        ranks = RANKS[MODELS.get(name).meta["inputs"]]
        for data, info in INFOS.items():
            if len(info.input_shape) in ranks:
                cases.append(pytest.param(name, info, id=f"{name}-{data}"))
    return cases


@pytest.mark.parametrize("name,info", _cases())
def test_forward_backward(name: str, info: DataInfo) -> None:
    torch.manual_seed(0)
    model = build_model(name, {}, info)
    x = torch.randn(3, *info.input_shape)
    y = model(x)
    assert y.shape == (3, info.num_classes)
    assert torch.isfinite(y).all()
    y.sum().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


def test_every_input_category_is_tested() -> None:
    assert set(RANKS) == set(READS)  # register_model refuses any other category


@pytest.mark.parametrize("name", MODELS.names())
def test_options_refuse_yaml_booleans_and_infinities_as_numbers(name: str) -> None:
    """Every number option of every family, from its JSON schema: YAML's true is not a number, .inf not a width."""
    options = MODELS.get(name).options
    for field, schema in options.model_json_schema()["properties"].items():
        schema = next((s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"), schema)
        kind = schema["items"].get("type") if schema.get("type") == "array" else schema.get("type")
        if kind not in ("integer", "number"):
            continue
        for bad in (True, float("inf")):
            value = [bad] if schema.get("type") == "array" else bad
            with pytest.raises(ValidationError):
                options.model_validate({field: value})


def test_image_family_rejects_vector_input() -> None:
    with pytest.raises(ConfigError, match="lenet"):
        build_model("lenet", {}, INFOS["vector"])


def test_unknown_option_rejected() -> None:
    with pytest.raises(Exception, match="extra"):
        build_model("resnet", {"bogus": 1}, INFOS["digits"])


@pytest.mark.parametrize("name", ["linear", "polynomial"])
def test_binary_gives_one_logit(name: str) -> None:
    info = DataInfo((5,), 1, task="binary")
    assert build_model(name, {}, info)(torch.randn(3, 5)).shape == (3, 1)


def test_resnet_plain_variant_builds() -> None:
    model = build_model("resnet", {"residual": False, "blocks": 2}, INFOS["cifar"])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_recurrent_parameter_ratio() -> None:
    info = DataInfo((1, 8, 8), 10)
    counts = {
        cell: recurrent_parameter_count(build_model("rnn_classifier", {"cell": cell, "hidden_size": 32}, info))
        for cell in ("rnn", "lstm", "gru")
    }
    assert counts["lstm"] == 4 * counts["rnn"]
    assert counts["gru"] == 3 * counts["rnn"]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_hidden_size_for_params(cell: str, num_layers: int) -> None:
    target = 20_000
    h = hidden_size_for_params(cell, 28, target, num_layers=num_layers)
    opts = {"cell": cell, "hidden_size": h, "num_layers": num_layers}
    actual = recurrent_parameter_count(build_model("rnn_classifier", opts, INFOS["mnist"]))
    assert abs(actual - target) / target < 0.05


@pytest.mark.parametrize("degree", [1, 3, 10])
def test_polynomial_coefficients(degree: int) -> None:
    model = build_model("polynomial", {"degree": degree}, DataInfo((1,), 1, task="regression"))
    coef = model.coefficients()
    assert coef.shape == (degree + 1,)
    x = torch.tensor([[2.0]])
    # the coefficients are the model: bias + sum_k c_k x^k
    expected = sum(coef[k] * 2.0**k for k in range(degree + 1))
    assert torch.allclose(model(x).squeeze(), expected, rtol=1e-4)


def _weight_std(model: nn.Module) -> float:
    return (
        torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]).std().item()
    )


@pytest.mark.parametrize("scheme", [s for s in INIT_SCHEMES if s != "default"])
def test_apply_init_changes_weights(scheme: str) -> None:
    torch.manual_seed(0)
    model = build_model("deep_cnn", {"depth": 3}, INFOS["digits"])
    before = _weight_std(model)
    apply_init(model, scheme, seed=0)
    assert abs(_weight_std(model) - before) > 1e-3
    assert all(m.bias.abs().max() == 0 for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


def test_apply_init_default_and_seed() -> None:
    model = build_model("mlp", {}, INFOS["vector"])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    apply_init(model, "default")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    a = apply_init(build_model("mlp", {}, INFOS["vector"]), "kaiming", seed=1)
    b = apply_init(build_model("mlp", {}, INFOS["vector"]), "kaiming", seed=1)
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters(), strict=True))


def test_apply_init_rejects_unknown_scheme() -> None:
    with pytest.raises(ConfigError, match="kaiming"):
        apply_init(nn.Linear(2, 2), "bogus")


def test_maxout_doubles_hidden_parameters() -> None:
    def hidden_params(activation: str) -> int:
        model = build_model("mlp", {"hidden": [32, 32], "activation": activation}, INFOS["vector"])
        head = model[-1]  # the output layer is the same in both
        return sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in head.parameters())

    assert hidden_params("maxout") == 2 * hidden_params("relu")


@pytest.mark.parametrize("name", ["ngram_lm", "lstm_lm"])
def test_language_model_embeddings_start_small(name: str) -> None:
    from pipeline.models.text import EMBEDDING_INIT_RANGE

    info = DataInfo((12,), 50, task="classification", extra={"vocab_size": 50, "pad_index": 0})
    torch.manual_seed(0)
    w = build_model(name, {"embedding_dim": 16}, info).embedding.weight.detach()
    assert w.abs().max() <= EMBEDDING_INIT_RANGE and w[1:].std() > EMBEDDING_INIT_RANGE / 4
    assert torch.equal(w[0], torch.zeros(16))  # padding embeds to zeros
    torch.manual_seed(0)
    assert torch.equal(build_model(name, {"embedding_dim": 16}, info).embedding.weight.detach(), w)


@pytest.mark.parametrize("blocks", [1, 3])
def test_plain_and_residual_resnets_differ_only_by_shortcuts(blocks: int) -> None:
    plain = build_model("resnet", {"residual": False, "blocks": blocks, "width": 8}, INFOS["digits"])
    res = build_model("resnet", {"residual": True, "blocks": blocks, "width": 8}, INFOS["digits"])
    convs = lambda m: [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3)]  # noqa: E731
    assert len(convs(plain)) == len(convs(res)) == 1 + 2 * 3 * blocks  # stem + 2 per block, 3 stages
    # the residual net adds only the 1x1 projection shortcuts (and their BN) where a stage changes shape
    extra = sum(p.numel() for p in res.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == (8 * 16 + 16 * 32) + 2 * (16 + 32)
