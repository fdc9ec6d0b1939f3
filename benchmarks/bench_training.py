"""Training and inference throughput of the default U-Net on this machine: fp32 vs bf16 autocast,
NCHW vs channels_last, pretrained-encoder architecture vs resnet34.

Prints megapixels per second and the ratio of each setting to fp32/NCHW, measured in one run
(median of timed iterations after a warm-up). Used to choose the configs' defaults:
``precision`` and ``channels_last``.

Usage:
    python benchmarks/bench_training.py [--patch 256] [--batch 8] [--iters 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from histoseg.models.segmentation import build_segmentation_model

SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def measure(
    encoder: str, decoder: list[int], bf16: bool, channels_last: bool, train: bool, args: argparse.Namespace
) -> float:
    torch.manual_seed(0)
    net = build_segmentation_model(5, encoder=encoder, decoder_channels=decoder)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format).train(train)
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.rand(args.batch, 3, args.patch, args.patch).contiguous(memory_format=memory_format)
    y = torch.randint(0, 5, (args.batch, args.patch, args.patch))
    times = []
    for _ in range(args.iters + 1):
        start = time.perf_counter()
        if train:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = net(x)
            loss = torch.nn.functional.cross_entropy(out.float(), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        else:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                net(x)
        times.append(time.perf_counter() - start)
    return args.batch * args.patch**2 / 1e6 / statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=4)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x {args.patch}^2"
    )
    for encoder, decoder in (
        ("tu-tf_efficientnet_lite0", [128, 64, 32, 24, 16]),
        ("resnet34", [256, 128, 64, 32, 16]),
    ):
        for train in (True, False):
            base = None
            for precision, cl in SETTINGS:
                mps = measure(encoder, decoder, precision == "bf16", cl, train, args)
                base = base or mps
                print(
                    f"{encoder:26s} {'train' if train else 'infer':5s} {precision} {'channels_last' if cl else 'NCHW':13s} "
                    f"{mps:6.3f} MP/s  x{mps / base:4.2f} vs fp32/NCHW",
                    flush=True,
                )


if __name__ == "__main__":
    main()
