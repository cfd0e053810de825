"""GPU throughput: the `resnet` family on CIFAR-10-sized random data, through `fit` and through a bare loop.

Self-contained (no data files, no MLflow, no Ray); prints everything it measures. On one GPU:
  1. peak bf16 matmul TFLOP/s of this card, measured here with large torch.matmul calls;
  2. model FLOPs per sample (torch.utils.flop_counter, forward; training ~ 3x forward);
  3. training samples/s with bf16 autocast and channels_last, through
       bare      a hand-written loop (randperm on the GPU, SGD, autocast, no metrics),
       bare+gn   the same plus fit's per-step gradient-norm metric (to attribute fit's overhead),
       fit       pipeline.train.fit with TrainConfig(precision="bf16", channels_last=True), diagnostics on,
     interleaved, `--reps` times, for ResNet-20 (width 16) and a wide variant (width 64);
  4. each as a fraction of the measured matmul peak.
Samples/s counts training steps only (fit's own `epoch_seconds`, and the same span in the bare loop), median
over epochs after the first (which includes cuDNN autotuning).

    python benchmarks/gpu_resnet.py             # ~2-3 min on an H100
    python benchmarks/gpu_resnet.py --smoke     # seconds, on the CPU when there is no GPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import TrainConfig  # noqa: E402
from pipeline.data.base import Splits  # noqa: E402
from pipeline.datainfo import DataInfo  # noqa: E402
from pipeline.diagnostics import flops_per_sample  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.tasks import grad_norm as total_grad_norm  # noqa: E402
from pipeline.tasks import task_for  # noqa: E402
from pipeline.train import fit  # noqa: E402

T0 = time.perf_counter()


def say(*args) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s]", *args, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul_tflops(device: torch.device, sizes: list[int], iters: int) -> tuple[float, dict[int, float]]:
    """Best bf16 matmul throughput over a few square sizes (2 n^3 FLOPs per product)."""
    out = {}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        sync(device)
        out[n] = 2 * n**3 * iters / (time.perf_counter() - t) / 1e12
        del a, b
    return max(out.values()), out


def make_data(n: int, n_val: int, device: torch.device) -> Splits:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n + 2 * n_val, 3, 32, 32, device=device, generator=g)
    y = torch.randint(0, 10, (n + 2 * n_val,), device=device, generator=g)
    tr, va, te = slice(0, n), slice(n, n + n_val), slice(n + n_val, None)
    return Splits(x[tr], y[tr], x[va], y[va], x[te], y[te], DataInfo((3, 32, 32), 10))


def new_model(opts: dict, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet", opts, DataInfo((3, 32, 32), 10)).to(device)


def bare_loop(opts, data, cfg: TrainConfig, device, grad_norm: bool) -> list[float]:
    """Per-epoch training seconds of a hand-written bf16 + channels_last loop."""
    model = new_model(opts, device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    x, y, n = data.x_train, data.y_train, len(data.x_train)
    times = []
    for _ in range(cfg.epochs):
        model.train()
        sync(device)
        t = time.perf_counter()
        order = torch.randperm(n, device=device)
        total = torch.zeros((), device=device)
        for start in range(0, n, cfg.batch_size):
            b = order[start : start + cfg.batch_size]
            xb = x[b].contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_norm:  # what Task.train_step adds each step for the train_grad_norm metric
                total = total + total_grad_norm(model)
            opt.step()
            total = total + loss.detach()
        float(total)  # one sync per epoch, as fit's reduced epoch metrics
        times.append(time.perf_counter() - t)
    return times


def with_fit(opts, data, cfg: TrainConfig, device) -> list[float]:
    model = new_model(opts, device)
    result = fit(model, data, task_for("classification"), cfg, None, seed=0)
    return [h["epoch_seconds"] for h in result.history]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; runs on the CPU when there is no GPU")
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--models", default="16x3,64x3", help="comma-separated WIDTHxBLOCKS of the resnet family")
    ap.add_argument("--budget-s", type=float, default=240, help="skip what is left after this many seconds")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        # bf16 convolutions are slow on most CPUs: this checks the code path, not the speed
        args.samples, args.epochs, args.batch_size, args.reps, args.models = 128, 2, 64, 1, "4x1"
    say(f"python {platform.python_version()}, torch {torch.__version__}, device {device}")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        say(
            f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, "
            f"{p.multi_processor_count} SMs, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        )
        torch.backends.cudnn.benchmark = True  # both loops alike
    elif not args.smoke:
        sys.exit("no GPU: run with --smoke for a CPU check")

    sizes = [256] if device.type == "cpu" else [4096, 8192, 16384]
    peak, by_size = peak_matmul_tflops(device, sizes, iters=2 if device.type == "cpu" else 20)
    say(
        "bf16 matmul TFLOP/s by size: "
        + ", ".join(f"{n}: {v:.1f}" for n, v in by_size.items())
        + f" -> peak {peak:.4g}"
    )

    data = make_data(args.samples, max(args.samples // 10, 64), device)
    say(f"data: {tuple(data.x_train.shape)} train, {tuple(data.x_val.shape)} val, on {device}")
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=0.1, momentum=0.9, precision="bf16", channels_last=True
    )

    rows = []
    for spec in args.models.split(","):
        width, blocks = (int(v) for v in spec.split("x"))
        opts = {"width": width, "blocks": blocks}
        name = f"resnet width {width}, {blocks} block(s)/stage ({6 * blocks + 2} layers)"
        model = new_model(opts, device)
        fwd = flops_per_sample(model, data.x_val[:1])
        n_params = sum(p.numel() for p in model.parameters())
        del model
        say(
            f"{name}: {n_params / 1e6:.2f} M parameters, {fwd / 1e6:.1f} MFLOPs/sample forward, "
            f"~{3 * fwd / 1e6:.1f} training"
        )
        ways = {
            "bare": lambda opts=opts: bare_loop(opts, data, cfg, device, grad_norm=False),
            "bare+gn": lambda opts=opts: bare_loop(opts, data, cfg, device, grad_norm=True),
            "fit": lambda opts=opts: with_fit(opts, data, cfg, device),
        }
        sps: dict[str, list[float]] = {k: [] for k in ways}
        for rep in range(args.reps):
            for way, fn in ways.items():
                if time.perf_counter() - T0 > args.budget_s:
                    say(f"budget of {args.budget_s:.0f} s spent: skipping {way} rep {rep + 1}")
                    continue
                try:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    secs = fn()
                    steady = secs[1:] or secs
                    sps[way] += [args.samples / s for s in steady]
                    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
                    say(
                        f"  rep {rep + 1} {way:8s} epoch s {[round(s, 3) for s in secs]} -> "
                        f"{statistics.median(args.samples / s for s in steady):,.0f} samples/s, peak mem {mem:.2f} GiB"
                    )
                except Exception:  # keep going: one failure must not lose the other numbers
                    say(f"  rep {rep + 1} {way} FAILED:")
                    traceback.print_exc()
        base = statistics.median(sps["bare"]) if sps["bare"] else float("nan")
        for way, v in sps.items():
            if not v:
                continue
            s = statistics.median(v)
            tflops = s * 3 * fwd / 1e12
            rows.append([name, way, f"{s:,.0f}", f"{s / base:.3f}", f"{tflops:.3g}", f"{100 * tflops / peak:.3g}%"])

    print()
    print(
        f"peak bf16 matmul measured: {peak:.4g} TFLOP/s; batch {args.batch_size}, {args.samples} samples, "
        f"bf16 autocast + channels_last, {args.epochs} epochs x {args.reps} reps (first epoch of each dropped)"
    )
    print("| model | loop | train samples/s (median) | vs bare | model TFLOP/s (3x fwd) | of measured peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    say("done")


if __name__ == "__main__":
    main()
