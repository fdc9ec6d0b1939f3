"""``python -m histoseg.synthetic --out DIR``: write a synthetic dataset (see :func:`histoseg.synthetic.main`)."""

from histoseg.synthetic.command import main

raise SystemExit(main())
