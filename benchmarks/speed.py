#!/usr/bin/env python3
"""Speed of the hot loops, measured side by side in one run; prints ratios (docs/PERFORMANCE.md).

sim    simulate() to T = --T with every T reported, against its limit: T forwards of the same quantized
       ANN (same layers, BN folded, same batch). Per steps_per_call K (K steps layer by layer in one
       pass) and, on a GPU, with the fused Triton neuron kernel and the eager loop; peak memory at T, 4T.
sj     the same network with SpikingJelly's IFNode (soft reset, half-threshold start) in place of ours,
       single-step ('s', the loop its conversion tutorial uses) and multi-step ('m', all T at once):
       time ratio to ours, and whether predictions agree at every T. Needs `pip install spikingjelly`.
train  one SGD step (forward, backward, update) of the Noise Adaptor network against the same network
       with plain ReLU: eager with the quantizer unfused and fused, and (--compile) under torch.compile.
data   seconds per training batch from a DataLoader with PIL augmentation in --workers processes and
       from DeviceLoader (data and augmentation on the device), against one training step.

Networks are freshly initialised (speed does not depend on the weights); scales are initialised on
the benchmark batch so the neurons fire at realistic rates.

    python benchmarks/speed.py                      # CPU, all sections
    python benchmarks/speed.py --device cuda --json speed.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time

import torch
from torch import nn

from noiseadaptor import QuantConfig, QuantReLU, convert, init_scales, prepare, simulate
from noiseadaptor.ann.models import create_model


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of fn() in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def build(name: str, batch: int, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name, num_classes=10).to(device)
    q = prepare(model, QuantConfig(p=2, noise="none"))
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    init_scales(q, x)
    return q.eval(), x, y


def quantized_ann_like(snn) -> nn.Module:
    """The simulation's own layers (BN folded) with each IF neuron back as its eval-mode quantizer:
    the dense network whose T forwards bound a dense T-step simulation from below."""
    ann = copy.deepcopy(snn.net)
    for name, n in snn.neurons():
        ann.set_submodule(name, QuantReLU(QuantConfig(p=2, noise="none"), scale=n.threshold.item() / 2).eval())
    return ann.eval()


def bench_sim(args, device) -> list[dict]:
    rows = []
    for name in args.models:
        q, x, y = build(name, args.batch, device)
        snn = convert(q)
        ann = quantized_ann_like(snn).to(device)

        @torch.inference_mode()
        def ann_T():
            for _ in range(args.T):
                ann(x)

        limit = timed(ann_T, device, args.repeats)
        print(f"\n{name}, batch {args.batch}, T={args.T} on {device}: {args.T} ANN forwards {limit * 1e3:.1f} ms")
        kernels = ["fused", "eager"] if device.type == "cuda" else ["eager"]
        for kernel in kernels:
            for k in args.steps_per_call:
                os.environ["NOISEADAPTOR_TRITON"] = "1" if kernel == "fused" else "0"
                run = lambda T=args.T: simulate(snn, [(x, y)], T=T, steps_per_call=k, progress=False)  # noqa: E731
                seconds = timed(run, device, args.repeats)
                memory = [peak_memory(lambda: run(T), device) for T in (args.T, 4 * args.T)]
                row = dict(
                    model=name,
                    device=str(device),
                    batch=args.batch,
                    T=args.T,
                    steps_per_call=k,
                    neuron_kernel=kernel,
                    seconds=seconds,
                    ann_limit_seconds=limit,
                    ratio_to_limit=seconds / limit,
                    peak_mib_T=memory[0],
                    peak_mib_4T=memory[1],
                )
                rows.append(row)
                mem = "" if memory[0] is None else f"   peak {memory[0]:.0f} MiB at T, {memory[1]:.0f} MiB at 4T"
                print(
                    f"  simulate K={k:<3d} {kernel + ' neurons':14s} {seconds * 1e3:8.1f} ms"
                    f"   {seconds / limit:5.2f}x the limit{mem}"
                )
        os.environ.pop("NOISEADAPTOR_TRITON")
    return rows


class _SpikingJellyIF(nn.Module):
    """SpikingJelly's IFNode in place of an IFNeuron: soft reset, membrane starting at threshold/2,
    output spike * threshold. In multi-step mode it takes [T*B, ...] and folds time out and back."""

    def __init__(self, threshold: float, step_mode: str):
        super().__init__()
        from spikingjelly.activation_based import neuron

        self.threshold, self.T = threshold, 1
        self.node = neuron.IFNode(v_threshold=threshold, v_reset=None, step_mode=step_mode)

    def reset(self) -> None:
        self.node.reset()
        self.node.v = 0.5 * self.threshold

    def forward(self, x):
        if self.node.step_mode == "s":
            return self.node(x) * self.threshold
        return self.node(x.view(self.T, -1, *x.shape[1:])).flatten(0, 1) * self.threshold


def spikingjelly_net(snn, step_mode: str) -> nn.Module:
    net = copy.deepcopy(snn.net)
    for name, n in snn.neurons():
        net.set_submodule(name, _SpikingJellyIF(n.threshold.item(), step_mode))
    return net


@torch.inference_mode()
def spikingjelly_predictions(net, x, T: int, step_mode: str) -> torch.Tensor:
    """Predictions [T, B] at every T, the way SpikingJelly users simulate a converted network."""
    nodes = [m for m in net.modules() if isinstance(m, _SpikingJellyIF)]
    for m in nodes:
        m.reset()
    if step_mode == "m":
        for m in nodes:
            m.T = T
        out = net(x.repeat(T, *([1] * (x.dim() - 1)))).view(T, x.shape[0], -1)
        return out.cumsum(0).argmax(-1)
    total, preds = 0, []
    for _ in range(T):
        total = total + net(x)
        preds.append(total.argmax(-1))
    return torch.stack(preds)


@torch.inference_mode()
def our_predictions(snn, x, T: int, k: int) -> torch.Tensor:
    snn.reset()
    outs = torch.cat([snn.run(x, min(k, T - t)) for t in range(0, T, k)])
    return outs.cumsum(0).argmax(-1)


def bench_spikingjelly(args, device) -> list[dict]:
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        print("\nsj: spikingjelly is not installed (pip install spikingjelly); skipped")
        return []
    from noiseadaptor.snn.simulation import default_steps_per_call

    rows = []
    for name in args.models:
        q, x, y = build(name, args.batch, device)
        snn = convert(q)
        for k in sorted({default_steps_per_call(device), args.T}):
            ours = timed(
                lambda: simulate(snn, [(x, y)], T=args.T, steps_per_call=k, progress=False), device, args.repeats
            )
            ours_pred = our_predictions(snn, x, args.T, k)
            print(f"\n{name}, batch {args.batch}, T={args.T} on {device}: ours (simulate, K={k}) {ours * 1e3:.1f} ms")
            for mode in ("s", "m"):
                net = spikingjelly_net(snn, mode)
                seconds = timed(lambda: spikingjelly_predictions(net, x, args.T, mode), device, args.repeats)
                agree = (spikingjelly_predictions(net, x, args.T, mode) == ours_pred).float().mean().item()
                rows.append(
                    dict(
                        model=name,
                        device=str(device),
                        batch=args.batch,
                        T=args.T,
                        steps_per_call=k,
                        spikingjelly_mode=mode,
                        spikingjelly_seconds=seconds,
                        ours_seconds=ours,
                        speedup=seconds / ours,
                        prediction_agreement=agree,
                    )
                )
                print(
                    f"  SpikingJelly step_mode={mode!r} {seconds * 1e3:8.1f} ms   ours is {seconds / ours:5.2f}x "
                    f"faster   predictions identical at every T: {agree * 100:.2f}%"
                )
    return rows


def bench_train(args, device) -> list[dict]:
    """Variants: eager with the quantizer unfused (NOISEADAPTOR_FUSED=0) and fused (=1), and the whole
    model under torch.compile (both networks)."""
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        x = torch.randn(args.batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (args.batch,), device=device)
        plain = create_model(name, num_classes=10).to(device)
        noisy = prepare(plain, QuantConfig(p=2))
        init_scales(noisy, x)
        print(f"\n{name}, batch {args.batch} on {device}: one SGD step")
        variants = [("eager, quantizer unfused", False, "0"), ("eager, quantizer fused", False, "1")]
        variants += [("torch.compile(model)", True, "auto")] if args.compile else []
        for label, compiled, fused in variants:
            os.environ["NOISEADAPTOR_FUSED"] = fused
            times = {}
            for kind, model in (("relu", plain), ("na", noisy)):
                model = copy.deepcopy(model).train()
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                forward = torch.compile(model) if compiled else model

                def step():
                    opt.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(forward(x), y).backward()
                    opt.step()

                step()  # compile outside the timing
                times[kind] = timed(step, device, args.repeats)
            rows.append(
                dict(
                    model=name,
                    device=str(device),
                    batch=args.batch,
                    variant=label,
                    relu_seconds=times["relu"],
                    na_seconds=times["na"],
                    overhead=times["na"] / times["relu"],
                )
            )
            print(
                f"  {label:26s} ReLU {times['relu'] * 1e3:7.2f} ms   Noise Adaptor {times['na'] * 1e3:7.2f} ms"
                f"   {times['na'] / times['relu']:.2f}x"
            )
        os.environ.pop("NOISEADAPTOR_FUSED")
    return rows


class _InMemoryCIFAR(torch.utils.data.Dataset):
    """What torchvision's CIFAR10 does per item (uint8 HWC array -> PIL image -> transforms), on random
    images, so the data section needs no download."""

    def __init__(self, n: int, transform):
        self.data = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8).numpy()
        self.targets = torch.randint(0, 10, (n,)).tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def bench_data(args, device) -> list[dict]:
    """Seconds per training batch from the usual DataLoader (PIL crop + flip + normalise in worker
    processes) and from DeviceLoader, against one Noise Adaptor training step on the same batch."""
    from noiseadaptor.data import DeviceLoader, _transforms

    dataset = _InMemoryCIFAR(args.batch * 40, _transforms("cifar10", train=True))
    rows, batches = [], 30

    def per_batch(loader) -> float:
        def go():
            for i, (x, y) in enumerate(loader):
                x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if i + 1 == batches:
                    break

        return timed(go, device, 1) / batches

    q, x, y = build("cifar-resnet20", args.batch, device)
    noisy = q.train()
    opt = torch.optim.SGD(noisy.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(noisy(x), y).backward()
        opt.step()

    step_seconds = timed(step, device, args.repeats)
    print(
        f"\ndata for cifar-resnet20, batch {args.batch} on {device}: one Noise Adaptor step {step_seconds * 1e3:.2f} ms"
    )
    loaders = {
        f"DataLoader, {w} workers": torch.utils.data.DataLoader(
            dataset,
            batch_size=args.batch,
            shuffle=True,
            num_workers=w,
            persistent_workers=w > 0,
            pin_memory=device.type == "cuda",
        )
        for w in args.workers
    }
    loaders["DeviceLoader"] = DeviceLoader.from_dataset(dataset, args.batch, "cifar10", device)
    for label, loader in loaders.items():
        seconds = per_batch(loader)
        rows.append(
            dict(
                device=str(device),
                batch=args.batch,
                loader=label,
                seconds_per_batch=seconds,
                step_seconds=step_seconds,
                fraction_of_step=seconds / step_seconds,
            )
        )
        print(f"  {label:24s} {seconds * 1e3:8.2f} ms per batch   {seconds / step_seconds:6.2f}x a training step")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--sections", nargs="+", default=["sim", "sj", "train", "data"], choices=["sim", "sj", "train", "data"]
    )
    ap.add_argument("--models", nargs="+", default=["cifar-resnet20", "cifar-vgg16"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--T", type=int, default=32)
    ap.add_argument("--steps-per-call", type=int, nargs="+", default=[1, 4, 8, 32])
    ap.add_argument("--compile", action="store_true", help="train section: also torch.compile(model)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 4], help="data section: DataLoader processes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="write all measurements here")
    args = ap.parse_args()
    device = torch.device(args.device)
    info = dict(
        torch=torch.__version__,
        python=platform.python_version(),
        threads=torch.get_num_threads(),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
    )
    print(f"torch {info['torch']}, {info['device_name'] or 'cpu'}, {info['threads']} CPU threads")
    results = {"info": info}
    for section, bench in (
        ("sim", bench_sim),
        ("sj", bench_spikingjelly),
        ("train", bench_train),
        ("data", bench_data),
    ):
        if section in args.sections:
            results[section] = bench(args, device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
