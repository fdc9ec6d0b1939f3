"""``python -m histoseg``: the command line (see :mod:`histoseg.cli`)."""

from histoseg.cli import main

if __name__ == "__main__":
    main()
