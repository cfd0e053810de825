"""Generative families (autoencoder, VAE, GAN), their tasks, the [0, 1] image data, and the study end to end."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.data import DATASETS, prepare
from pipeline.data.base import LoadContext
from pipeline.datainfo import DataInfo
from pipeline.models import MODELS, build_model
from pipeline.tasks import task_for
from pipeline.tasks.generative import GANPair, feature_gaussian, frechet_distance
from pipeline.train import all_reduce_sums, fit

INFO = DataInfo((1, 8, 8), 10, extra={"normalize": False})
FAMILIES = ["autoencoder", "vae", "gan"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return DATASETS.build("unit_images", {}, LoadContext(0, tmp_path_factory.mktemp("raw"), False))


def _images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *INFO.input_shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- data


def test_unit_images_keep_pixels_in_unit_range(tmp_path: Path) -> None:
    ctx = LoadContext(0, tmp_path, False)
    s = DATASETS.build("unit_images", {}, ctx)
    assert s.info.extra["normalize"] is False and s.info.input_shape == (1, 8, 8)
    assert s.x_train.min() == 0.0 and s.x_train.max() == 1.0
    plain = DATASETS.build("digits", {}, ctx)
    assert torch.equal(s.x_train, plain.x_train) and torch.equal(s.y_test, plain.y_test)  # same split, same pixels
    path = prepare("unit_images", {}, ctx, tmp_path / "prepared")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["normalization"] == {}  # prepare left the pixels alone
    assert torch.load(path, weights_only=True)["x_val"].max() <= 1.0


# --------------------------------------------------------------------------- models


def test_families_are_registered_with_their_tasks() -> None:
    for name in FAMILIES:
        meta = MODELS.get(name).meta
        assert meta["task"] == name and meta["inputs"] == "generative"


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_contract_and_samples(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 3, "hidden": [32]}, INFO)
    x = _images(5)
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert out["x"] is x and out["samples"].shape == (5, 1, 8, 8)
        s1 = model.sample(7, generator=torch.Generator().manual_seed(1))
        s2 = model.sample(7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s1, s2) and s1.shape == (7, 1, 8, 8) and 0 <= s1.min() and s1.max() <= 1
    model.train()
    if name != "gan":
        assert "samples" not in model(x)  # no sampling cost while training
        assert model.encode(x).shape == (5, 3) and model.decode(torch.zeros(2, 3)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("name", ["autoencoder", "vae"])
def test_autoencoders_loss_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 3, "hidden": [32, 16]}, INFO)
    loss = task_for(name).loss(model(_images()), None)
    assert torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_autoencoder_tracks_its_code_distribution_only_while_training() -> None:
    torch.manual_seed(0)
    model = build_model("autoencoder", {"latent_dim": 3}, INFO)
    before = model.code_mean.clone()
    model.eval()
    model(_images())
    assert torch.equal(model.code_mean, before)
    model.train()
    z = model(_images())["z"].detach()
    torch.testing.assert_close(model.code_mean, 0.9 * before + 0.1 * z.mean(0))


def test_gan_step_updates_both_networks() -> None:
    torch.manual_seed(0)
    model = build_model("gan", {"latent_dim": 4, "hidden": [32]}, INFO)
    task = task_for("gan")
    cfg = TrainConfig(optimizer="adam", lr=0.01)
    optimizers = task.optimizers(model, cfg)
    assert len(optimizers) == 2 and optimizers[0].param_groups[0]["betas"] == (0.5, 0.999)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    out = task.train_step(model, _images(), torch.zeros(16, dtype=torch.long), optimizers, cfg)
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    assert {"loss", "d_loss", "g_loss", "count"} <= set(out) and float(out["count"]) == 16
    assert math.isfinite(float(out["d_loss"])) and float(out["d_loss"]) > 0


def test_gan_discriminator_learns_to_separate_real_from_generated() -> None:
    """Alternating steps on a fixed pattern: D's probability on real images ends above its probability on
    generated ones, and G's loss is finite (a broken step would leave D at chance or diverge)."""
    torch.manual_seed(0)
    model = build_model("gan", {"latent_dim": 2, "hidden": [16]}, INFO)
    task = task_for("gan")
    cfg = TrainConfig(optimizer="adam", lr=0.005)
    opts = task.optimizers(model, cfg)
    real = torch.zeros(32, 1, 8, 8)
    real[:, :, 2:6, 3:5] = 1.0  # a bar
    for _ in range(30):
        task.train_step(model, real, torch.zeros(32, dtype=torch.long), opts, cfg)
    model.eval()
    with torch.no_grad():
        m = task.finalize(all_reduce_sums(task.batch_sums(model(real), None), torch.device("cpu")), "val")
    assert m["val_d_real"] > 0.5 and math.isfinite(m["val_g_loss"]) and m["val_fd_pixels"] >= 0
    assert 0.5 < m["val_d_accuracy"] <= 1.0  # it tells the bar from the generator's output better than chance


def test_gan_discriminator_accuracy_counts_both_halves() -> None:
    task = task_for("gan")
    x = _images(3)
    out = {"x": x, "d_real": torch.tensor([2.0, 2.0, -1.0]), "d_fake": torch.tensor([-3.0, 1.0, -1.0])}
    sums = task.family_sums(out)
    m = task.finalize({"count": 3.0, **{k: float(v) for k, v in sums.items()}}, "val")
    assert m["val_d_accuracy"] == pytest.approx(4 / 6)  # 2 of 3 real called real, 2 of 3 generated called fake
    cfg = TrainConfig(optimizer="adam", lr=0.01)
    model = build_model("gan", {"latent_dim": 2, "hidden": [8]}, INFO)
    step = task.train_step(model, _images(8), torch.zeros(8, dtype=torch.long), task.optimizers(model, cfg), cfg)
    assert 0.0 <= float(step["d_accuracy"]) / float(step["count"]) <= 1.0


# --------------------------------------------------------------------------- metrics


def test_frechet_distance_known_values() -> None:
    mu, cov = torch.zeros(3), torch.eye(3)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)
    # N(0, I) vs N(m, s^2 I) in d dims: |m|^2 + d (1 - s)^2
    m, s = torch.tensor([1.0, 2.0, 0.0]), 3.0
    assert frechet_distance(mu, cov, m, s**2 * torch.eye(3)) == pytest.approx(5.0 + 3 * (1 - s) ** 2)
    # general covariances against scipy's matrix square root
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T, b @ b.T
    expected = np.trace(c1 + c2 - 2 * sqrtm(c1 @ c2).real)
    fd = frechet_distance(torch.zeros(5), torch.tensor(c1), torch.zeros(5), torch.tensor(c2))
    assert fd == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_pixel_fd_from_summed_batches_equals_the_direct_value(name: str) -> None:
    """Sums over two batches (as over two ranks or eval batches) give the Fréchet distance of the whole set."""
    torch.manual_seed(0)
    model = build_model(name, {"latent_dim": 3, "hidden": [32]}, INFO).eval()
    task = task_for(name)
    x = _images(40)
    with torch.no_grad():
        outs = [model(x[:25]), model(x[25:])]
    sums: dict[str, torch.Tensor] = {}
    for o in outs:
        for k, v in task.batch_sums(o, None).items():
            sums[k] = sums.get(k, 0) + v
    reduced = all_reduce_sums(sums, torch.device("cpu"))
    assert reduced["real_outer"].shape == (64, 64) and isinstance(reduced["count"], float)  # vectors survive
    m = task.finalize(reduced, "val")
    fake = torch.cat([o["samples"] for o in outs])
    direct = frechet_distance(*feature_gaussian(x), *feature_gaussian(fake))
    assert m["val_fd_pixels"] == pytest.approx(direct, rel=1e-4)
    if name == "vae":
        assert m["val_elbo"] == pytest.approx(-m["val_loss"]) and m["val_kl"] > 0
    if name != "gan":
        assert 0 < m["val_recon_error"] < 1


def test_epoch_artifacts_write_a_sample_grid(tmp_path: Path) -> None:
    model = build_model("vae", {}, INFO)
    paths = task_for("vae").epoch_artifacts(model, 5, tmp_path)
    assert [p.name for p in paths] == ["samples_epoch005.png"] and paths[0].stat().st_size > 100
    assert model.training  # the hook leaves the mode as it found it
    assert task_for("vae").epoch_artifacts(model, 3, tmp_path) == []  # not every epoch: each log costs ~0.4 s


def test_sample_grids_at_the_first_epochs_then_every_tenth() -> None:
    from pipeline.tasks.generative import sample_grid_epoch

    assert [e for e in range(1, 41) if sample_grid_epoch(e)] == [1, 2, 5, 10, 20, 30, 40]


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_runs_the_family_step_and_improves_sample_quality(name: str, digits) -> None:
    torch.manual_seed(0)
    model = build_model(name, {}, digits.info)
    epochs = 15 if name == "gan" else 6  # a GAN's samples get worse before they get better
    cfg = TrainConfig(epochs=epochs, optimizer="adam", lr=0.005, diagnostics=False, checkpoint_every=0)
    res = fit(model, digits, task_for(name), cfg, seed=0)
    fd = [h["val_fd_pixels"] for h in res.history]
    assert not res.diverged and min(fd[-3:]) < 0.8 * fd[0], fd
    assert res.best_state is not None and res.best_metric == min(fd)


# --------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, store_dir: str, data, q) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_dir}/store", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = build_model("gan", {"latent_dim": 4, "hidden": [32]}, data.info)
        torch.manual_seed(100 + rank)  # different noise per rank: only gradient all-reduce keeps them equal
        cfg = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=0.01, diagnostics=False, checkpoint_every=0)
        res = fit(model, data, task_for("gan"), cfg, seed=0)
        # numpy, not tensors: a tensor crosses a queue through shared memory that dies with this process
        q.put((rank, {k: v.numpy().copy() for k, v in model.state_dict().items()}, res.history[-1]["val_fd_pixels"]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gan_under_ddp_keeps_both_networks_in_sync(tmp_path: Path, digits) -> None:
    """Two gloo ranks train on different shards with different noise; GANPair must all-reduce the gradients of
    the generator and the discriminator alike, so both ranks end with the same weights."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    data = digits.limit(256)
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, str(tmp_path), data, q)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, (s, fd)) for r, s, fd in (q.get(timeout=300) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (s0, fd0), (s1, fd1) = results[0], results[1]
    assert fd0 == fd1  # metrics are all-reduced
    torch.manual_seed(0)
    initial = build_model("gan", {"latent_dim": 4, "hidden": [32]}, INFO).state_dict()
    for k in s0:
        np.testing.assert_allclose(s0[k], s1[k], err_msg=f"{k} differs between ranks")
    moved = [k for k in s0 if not np.array_equal(s0[k], initial[k].numpy())]
    assert any(k.startswith("generator") for k in moved) and any(k.startswith("discriminator") for k in moved)


def test_gan_pair_wraps_each_network(tmp_path: Path) -> None:
    """In a (one-rank) process group, the GAN step runs through the DDP-wrapped networks and updates both."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = build_model("gan", {"latent_dim": 4, "hidden": [16]}, INFO)
        task = task_for("gan")
        pair = task.distribute(model, torch.device("cpu"))
        assert isinstance(pair, GANPair) and pair.module is model
        assert isinstance(pair.generator, DDP) and isinstance(pair.discriminator, DDP)
        assert pair.generate(torch.zeros(2, 4)).shape == (2, 1, 8, 8)
        cfg = TrainConfig(optimizer="adam", lr=0.01)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        task.train_step(pair, _images(), torch.zeros(16, dtype=torch.long), task.optimizers(model, cfg), cfg)
        moved = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
        assert moved == {"generator", "discriminator"}
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- the study end to end


@pytest.mark.slow
def test_generative_study_tiny_profile_end_to_end(tmp_path: Path, ray_local) -> None:
    from mlflow import MlflowClient

    from pipeline.config import load_params, load_study
    from pipeline.report.build import build_report
    from pipeline.sweep import run_study
    from tests.conftest import REPO, SERIAL_TRIALS, write_params

    params_path = write_params(tmp_path, studies=["generative"], **SERIAL_TRIALS)
    study = load_study(REPO / "experiments" / "generative.yaml", load_params(params_path), str(params_path))
    base = study.resolve({}, study.seeds[0]).dataset
    prepare(base.name, base.options, LoadContext(0, tmp_path, False), tmp_path / "prepared")
    summary = run_study(study, tmp_path / "prepared", tmp_path / "results")
    assert summary["errors"] == 0 and summary["trials"] == 3
    runs = json.loads((tmp_path / "results" / "runs.json").read_text())
    assert sorted(r["tags"]["variant"] for r in runs) == sorted(FAMILIES)
    client = MlflowClient(summary["tracking_uri"])
    for r in runs:
        assert r["status"] == "FINISHED" and "val_fd_pixels" in r["history"]
        grids = {a.path for a in client.list_artifacts(r["run_id"], "epochs")}
        assert grids == {"epochs/samples_epoch001.png", "epochs/samples_epoch002.png"}  # epochs 1, 2, 5, 10, 20, ...
    assert "val_elbo" in next(r for r in runs if r["tags"]["variant"] == "vae")["history"]
    assert {"val_d_loss", "val_d_accuracy", "train_d_accuracy"} <= set(
        next(r for r in runs if r["tags"]["variant"] == "gan")["history"]
    )
    out = tmp_path / "report"
    rep = build_report(study, tmp_path / "results", out, tmp_path / "prepared")
    answer = rep["analysis"]["answer"]
    assert "classifier_fd" in answer and "Judge confidence" in answer, answer
    assert "ELBO" in answer and "discriminator accuracy" in answer and "prior N(0, I)" in answer, answer
    values = rep["analysis"]["extras"]
    assert set(values["latent_space"]["values"]["code_kl"]) == {"autoencoder", "vae"}
    assert {"classifier_fd", "prior_classifier_fd", "elbo", "kl", "d_accuracy"} <= set(
        values["sample_quality"]["values"]
    )
    for fig in ("samples.png", "reconstructions.png", "latent_space.png"):
        assert (out / "figures" / fig).exists(), fig
    table = rep["analysis"]["extras"]["sample_quality"]
    assert table["judge_test_accuracy"] > 0.8 and set(table["classifier_fd"]) == set(FAMILIES)
    assert os.path.getsize(out / "figures" / "samples.png") > 1000


# --------------------------------------------------------------------------- report sections


def test_gaussian_kl_to_standard_known_values() -> None:
    from pipeline.sections.latent_space import gaussian_kl_to_standard

    d = 4
    assert gaussian_kl_to_standard(torch.zeros(d), torch.eye(d)) == pytest.approx(0.0, abs=1e-6)
    mu = torch.tensor([1.0, -2.0, 0.0, 0.5])
    assert gaussian_kl_to_standard(mu, torch.eye(d)) == pytest.approx(float(mu @ mu) / 2)
    s2 = 9.0  # a code spread 3x wider than the prior
    assert gaussian_kl_to_standard(torch.zeros(d), s2 * torch.eye(d)) == pytest.approx(d / 2 * (s2 - 1 - math.log(s2)))


def test_code_distribution_uses_the_aggregate_posterior_for_a_vae() -> None:
    from pipeline.sections.latent_space import code_distribution, gaussian_kl_to_standard

    torch.manual_seed(0)
    vae, ae = build_model("vae", {"latent_dim": 3}, INFO).eval(), build_model("autoencoder", {"latent_dim": 3}, INFO)
    x = _images(200)
    mean, cov = code_distribution(vae, x)
    mu, logvar = vae.posterior(x)
    # the mixture's covariance: the spread of the means plus the mean posterior variance
    assert torch.allclose(cov, torch.cov(mu.double().T) + torch.diag(logvar.double().exp().mean(0)), atol=1e-9)
    assert torch.allclose(mean, mu.double().mean(0))
    mean_ae, cov_ae = code_distribution(ae.eval(), x)
    assert mean_ae.shape == (3,) and cov_ae.shape == (3, 3)
    assert math.isfinite(gaussian_kl_to_standard(mean_ae, cov_ae))


def test_objective_values_and_sentence_read_each_familys_test_metrics() -> None:
    from pipeline.sections.sample_quality import objective_sentence, objective_values

    def run(seed: int, **final: float) -> dict:
        return {"run_id": f"r{seed}", "status": "FINISHED", "tags": {"seed": str(seed)}, "history": {}, "final": final}

    runs = {
        "vae": [run(0, test_elbo=-25.0, test_kl=3.0, test_recon_bce=22.0), run(1, test_elbo=-24.0, test_kl=3.2)],
        "gan": [run(0, test_d_accuracy=0.55), run(1, test_d_accuracy=0.61)],
    }
    values = objective_values(runs)
    assert values["elbo"] == {"vae": [-25.0, -24.0]} and values["kl"] == {"vae": [3.0, 3.2]}
    assert values["recon_bce"] == {"vae": [22.0]} and values["d_accuracy"] == {"gan": [0.55, 0.61]}
    text = objective_sentence(values)
    assert text is not None and "vae: ELBO -24.50 ± 0.71" in text and "gan: discriminator accuracy 0.580" in text
    assert objective_sentence({}) is None
