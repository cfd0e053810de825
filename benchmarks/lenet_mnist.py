"""The issue's reference result: LeNet under cnn_architectures' full profile reaches <= 1.2% MNIST test error.

Trains the one trial the full sweep runs for `model.name: lenet` (its first seed), resolved from params.yaml and
experiments/cnn_architectures.yaml exactly as the sweep resolves it, with `pipeline.train.fit` in this process
(no Ray, no MLflow), then prints the test error of the best epoch's weights. Exit code 1 when it is above
--max-error.

    cp -r ../shared/data /tmp/mnist_root        # torchvision unpacks the .gz files next to them: a writable copy
    python benchmarks/lenet_mnist.py --data-root /tmp/mnist_root               # ~10-30 min on one CPU core
    python benchmarks/lenet_mnist.py --data-root /tmp/mnist_root --smoke       # seconds: checks the path
    python benchmarks/lenet_mnist.py --data-root /tmp/mnist_root --device cuda # ~25 s on an H200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from pipeline.build import untrained  # noqa: E402
from pipeline.config import load_params, load_study  # noqa: E402
from pipeline.data import load_prepared, prepare  # noqa: E402
from pipeline.data.base import LoadContext  # noqa: E402
from pipeline.train import evaluate, fit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True, help="folder holding MNIST/raw/*-ubyte.gz (writable)")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--study", default=str(REPO / "experiments" / "cnn_architectures.yaml"))
    ap.add_argument("--profile", default="full")
    ap.add_argument("--variant", default="lenet", help="the model.name point of the study's search space")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    ap.add_argument("--max-error", type=float, default=0.012)
    ap.add_argument("--smoke", action="store_true", help="1 epoch on 2,000 training images: checks the path only")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    params = load_params(args.params).model_copy(update={"profile": args.profile})
    study = load_study(args.study, params, args.params)
    cfg = study.resolve({"model.name": args.variant}, study.seeds[0])
    options = dict(cfg.dataset.options)
    if args.smoke:
        cfg.train = cfg.train.model_copy(update={"epochs": 1})
        options["subset"] = 2000
    print(f"# {study.name} / {args.profile} / {args.variant}: {cfg.model_dump()}")
    print(
        f"# torch {torch.__version__}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else f", {args.threads} thread(s)")
        + f", load average {os.getloadavg()[0]:.1f}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        ctx = LoadContext(seed=params.seed, root=Path(args.data_root).resolve(), download=False)
        prepare(cfg.dataset.name, options, ctx, tmp)
        data = load_prepared(tmp, cfg.dataset.name, options)
    model, task = untrained(cfg, data.info, args.device)  # as a trial builds it

    def report(metrics: dict[str, float], _checkpoint) -> None:
        print(
            f"epoch {metrics['epoch']:.0f}: train_loss {metrics['train_loss']:.4f} "
            f"val_accuracy {metrics['val_accuracy']:.4f} ({metrics['epoch_seconds']:.0f} s)",
            flush=True,
        )

    t0 = time.perf_counter()
    result = fit(model, data, task, cfg.train, report, seed=cfg.seed, metric=study.spec.metric, mode=study.spec.mode)
    model.load_state_dict(result.best_state)
    test = evaluate(model, data.x_test, data.y_test, task, cfg.train.eval_batch_size, prefix="test")
    error = 1 - test["test_accuracy"]
    print(
        f"best epoch {result.best_epoch}, {time.perf_counter() - t0:.0f} s: test error {100 * error:.2f}% on "
        f"{len(data.x_test):,} MNIST test images (target <= {100 * args.max_error:.1f}%)"
    )
    return 0 if error <= args.max_error else 1


if __name__ == "__main__":
    sys.exit(main())
