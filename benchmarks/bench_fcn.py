"""Benchmark of dense prediction with a convolutionalized patch classifier (docs/methods.md section 3).

On one random 1024 x 1024 region and the project's default classifier
(``PlainPatchClassifier()``, 64-px patches: 64 um at 1 mpp, 32 um at 0.5 mpp) it times

- ``atrous``: one pass of the a-trous network (Li, Zhao, Wang, arXiv:1412.4526),
- ``shift_and_stitch``: f**2 = 64 shifted FCN passes (Long et al. 2015),
- per-pixel patch classification: the classifier on each pixel's 64 x 64 patch, batched;
  timed on a random sample of pixels and extrapolated to the whole region,
- ``upsample``: one FCN pass + bilinear upsampling (a non-exact baseline, for reference),

with the multiply-adds of each (``histoseg.models.dense.count_macs``), and checks that atrous is the
fastest exact method, that its speed-up over per-pixel classification is at least half the
MAC ratio, and that both exact maps equal the per-pixel logits at the sampled pixels.

Usage: ``python benchmarks/bench_fcn.py [--size 1024] [--threads 2] [--samples 512]``
(about 1-2 minutes on 2 CPU threads). Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from histoseg.models.atrous import atrous_network
from histoseg.models.classifiers import PlainPatchClassifier
from histoseg.models.convolutionalize import convolutionalize
from histoseg.models.dense import count_macs, dense_predict


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="side of the random region (px)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--samples", type=int, default=512, help="pixels timed for per-pixel classification")
    parser.add_argument("--chunk-rows", type=int, default=128, help="output rows per atrous chunk")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    p, size = 64, args.size
    clf = PlainPatchClassifier()  # the project's default: 64-px patches, widths (32, 64, 128), dense (256,)
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        for m in clf.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    clf.eval()
    fcn = convolutionalize(clf, p)
    f = fcn.output_stride
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(args.seed))
    before, after = p // 2, p - 1 - p // 2
    hp, wp = size + p - 1, size + p - 1
    n_params = sum(t.numel() for t in clf.parameters()) / 1e6
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; random region {size}x{size}")
    print(f"classifier: PlainPatchClassifier() ({n_params:.2f} M parameters), patch {p} px")
    print(f"FCN: output stride f = {f}, exact = {fcn.exact}")

    # warm-up (allocators, oneDNN kernels) on a small region
    small = image[..., :96, :96]
    for method in ("atrous", "shift_and_stitch", "upsample"):
        dense_predict(fcn, small, p, method)  # type: ignore[arg-type]

    # --- atrous -------------------------------------------------------------------------------------
    rows = args.chunk_rows
    atrous, t_atrous = _timed(dense_predict, fcn, image, p, "atrous", chunk_rows=rows)
    net = atrous_network(fcn)
    macs_atrous = sum(
        count_macs(net, (1, 3, min(size, r0 + rows) - r0 + p - 1, wp)) for r0 in range(0, size, rows)
    )
    macs_atrous_one = count_macs(net, (1, 3, hp, wp))

    # --- shift and stitch (one chunk: f*f passes over the whole padded region) ------------------------
    sas, t_sas = _timed(dense_predict, fcn, image, p, "shift_and_stitch", chunk_rows=size)
    macs_sas = sum(count_macs(fcn, (1, 3, hp - dy, wp - dx)) for dy in range(f) for dx in range(f))

    # --- upsample baseline ------------------------------------------------------------------------------
    _, t_up = _timed(dense_predict, fcn, image, p, "upsample")
    macs_up = count_macs(fcn, (1, 3, hp + f, wp + f))

    # --- per-pixel patch classification on a random sample of pixels, extrapolated ------------------
    gen = torch.Generator().manual_seed(args.seed + 1)
    ys = torch.randint(0, size, (args.samples,), generator=gen)
    xs = torch.randint(0, size, (args.samples,), generator=gen)
    padded = F.pad(image, (before, after, before, after), mode="reflect")
    batch = 256  # larger batches are faster per patch on CPU (fairer baseline)
    t0 = time.perf_counter()
    logits = []
    with torch.no_grad():
        for b in range(0, args.samples, batch):
            crops = torch.cat(
                [
                    padded[..., y : y + p, x : x + p]
                    for y, x in zip(ys[b : b + batch].tolist(), xs[b : b + batch].tolist(), strict=True)
                ]
            )
            logits.append(clf(crops))
    t_sample = time.perf_counter() - t0
    ref = torch.cat(logits)
    t_pixel = t_sample * (size * size) / args.samples
    macs_patch = count_macs(clf, (1, 3, p, p))
    macs_pixel = macs_patch * size * size

    diff_atrous = (atrous[0, :, ys, xs].T - ref).abs().max().item()
    diff_sas = (sas[0, :, ys, xs].T - ref).abs().max().item()
    diff_maps = (atrous - sas).abs().max().item()

    print()
    print(f"{'method':<34}{'time (s)':>11}{'GMAC':>11}{'speed-up':>10}{'MAC ratio':>11}   (vs per-pixel)")
    table = [
        ("atrous (one pass, 128-row chunks)", t_atrous, macs_atrous),
        ("shift_and_stitch (64 passes)", t_sas, macs_sas),
        ("per-pixel patches (extrapolated)", t_pixel, macs_pixel),
        ("upsample (1 pass; not exact)", t_up, macs_up),
    ]
    for name, t, m in table:
        print(f"{name:<34}{t:>11.2f}{m / 1e9:>11.1f}{t_pixel / t:>10.1f}{macs_pixel / m:>11.1f}")
    print()
    print(
        f"per-pixel time extrapolated from {args.samples} random pixels ({t_sample:.2f} s, "
        f"batches of {batch}) x {size * size} / {args.samples}; {macs_patch / 1e6:.1f} MMAC per patch."
    )
    print(f"atrous MACs without chunk halos (one pass on the whole region): {macs_atrous_one / 1e9:.1f} G")
    print(
        f"atrous vs shift_and_stitch: speed-up {t_sas / t_atrous:.2f}x, "
        f"MAC ratio {macs_sas / macs_atrous:.2f}x"
    )
    print(
        f"max |diff|: atrous vs shift_and_stitch {diff_maps:.2e}; at the {args.samples} sampled pixels, "
        f"atrous vs per-pixel {diff_atrous:.2e}, shift_and_stitch vs per-pixel {diff_sas:.2e}"
    )

    speedup, mac_ratio = t_pixel / t_atrous, macs_pixel / macs_atrous
    checks = [
        ("atrous is the fastest exact method", t_atrous < t_sas and t_atrous < t_pixel),
        (
            f"atrous speed-up over per-pixel ({speedup:.1f}x) >= half the MAC ratio ({mac_ratio / 2:.1f}x)",
            speedup >= mac_ratio / 2,
        ),
        (
            "atrous == shift_and_stitch == per-pixel (max |diff| <= 1e-4)",
            max(diff_maps, diff_atrous, diff_sas) <= 1e-4,
        ),
    ]
    print()
    for text, ok in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
