"""Command line of the synthetic generator (``histoseg synthesize`` and ``python -m histoseg.synthetic``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from histoseg.errors import ArgumentParser, HistosegError
from histoseg.synthetic.dataset import generate_dataset
from histoseg.synthetic.params import TissueParams


def main(argv: Sequence[str] | None = None, prog: str = "python -m histoseg.synthetic") -> int:
    """Command line: generate a synthetic dataset and print where it was written.

    Args:
        argv: The arguments (None: ``sys.argv``).
        prog: The program name in the usage and help (``histoseg synthesize`` from the ``histoseg`` command).
    """
    parser = ArgumentParser(
        prog=prog,
        description="Generate synthetic PAS kidney cortex slides with exact label masks.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=6, help="number of slides (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--width", type=int, default=3072, help="slide width in pixels (default 3072)")
    parser.add_argument("--height", type=int, default=2304, help="slide height in pixels (default 2304)")
    parser.add_argument("--mpp", type=float, default=0.5, help="microns per pixel (default 0.5)")
    parser.add_argument("--fibrosis", type=float, default=0.0, help="0 healthy .. 1 severe (default 0)")
    try:
        args = parser.parse_args(argv)
        slides = generate_dataset(
            args.out,
            n_slides=args.n,
            seed=args.seed,
            width=args.width,
            height=args.height,
            mpp=args.mpp,
            tissue=TissueParams(fibrosis=args.fibrosis),
        )
    except HistosegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    root = Path(args.out)
    for s in slides:
        print(f"{s.split:5s} {s.image_path}  labels: {s.label_path}")
    print(f"wrote {len(slides)} slides, {root / 'manifest.json'} and {root / 'slides.csv'}")
    return 0
