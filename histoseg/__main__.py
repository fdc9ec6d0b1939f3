"""``python -m histoseg``: the command line (see :mod:`histoseg.cli`).

SIGINT is handled from here on, before any heavy import (torch, matplotlib): a Ctrl-C at any moment of
the process ends it with one line and exit status 130 (:func:`histoseg.errors.run_interruptible`).
"""

from histoseg.errors import install_interrupt_handler

if __name__ == "__main__":
    install_interrupt_handler()
    from histoseg.cli import main

    main()
