"""histoseg doctor: every check on this machine, and each check's failure (monkeypatched) with its fix."""

import io
import os
import stat

import pytest

from histoseg import doctor
from histoseg.cli import main


def test_all_checks_run_here_and_print_one_line_each(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOSEG_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exit_:
        main(["doctor"])
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[1] for line in out[:-1] if not line.startswith(" ")]
    assert names == ["packages", "openslide", "weights", "gpu", "bf16", "cache", "cache-use", "disk"]
    assert f"cache folder {tmp_path / 'cache'} (HISTOSEG_CACHE), writable" in "\n".join(out)
    problems = sum(line.startswith("FAIL") for line in out)
    assert exit_.value.code == (1 if problems else 0)
    assert out[-1] == "histoseg doctor: all usable" if not problems else out[-1].endswith("; fix above")


def test_cache_use_shows_the_size_of_prepared_labels_and_how_to_clear_them(tmp_path):
    (tmp_path / "prepared-labels" / "k").mkdir(parents=True)
    with open(tmp_path / "prepared-labels" / "k" / "tiles.npy", "wb") as handle:
        handle.truncate(2**29)  # 0.5 GiB, a sparse file
    (tmp_path / "synthetic-kidney").mkdir()
    (tmp_path / "synthetic-kidney" / "a.tif").write_bytes(b"x" * 2**20)
    for i in range(20):  # hard links (a benchmark's cohort of one slide file) are counted once
        os.link(tmp_path / "synthetic-kidney" / "a.tif", tmp_path / "synthetic-kidney" / f"link{i}.tif")
    result = doctor.check_cache_use(tmp_path)
    assert result.ok is None
    assert result.text.startswith(f"0.50 GiB in {tmp_path} (prepared labels 0.50 GiB); ")
    assert doctor.folder_bytes(tmp_path / "synthetic-kidney") == 2**20
    assert f"rm -rf {tmp_path / 'prepared-labels'}" in result.text


def failing(check):
    result = check()
    assert result.ok is False and result.fix, result
    return result


def test_missing_package():
    result = failing(lambda: doctor.check_versions(lambda name: None if name == "timm" else "1.0"))
    assert "missing timm" in result.text and "pip install" in result.fix


def test_openslide_does_not_load():
    def broken():
        raise OSError("libopenslide.so.1: cannot open shared object file")

    result = failing(lambda: doctor.check_openslide(broken))
    assert "libopenslide.so.1" in result.text and "openslide-bin" in result.fix
    assert doctor.check_openslide(lambda: "4.0.1") == doctor.Check(
        "openslide", True, "OpenSlide library 4.0.1"
    )


def test_weights_not_installed():
    result = failing(lambda: doctor.check_weights(lambda: None))
    assert "histoseg-wsi[pretrained]" in result.fix


def test_gpus_none_usable_and_broken():
    assert doctor.check_gpus(count=lambda: 0).ok is None
    ok = doctor.check_gpus(count=lambda: 2, name=lambda i: f"GPU{i}", runs=lambda i: None)
    assert ok.ok is True and ok.text == "2 GPUs usable: cuda:0 GPU0, cuda:1 GPU1"

    def runs(index):
        if index == 1:
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    result = failing(lambda: doctor.check_gpus(count=lambda: 2, name=lambda i: "X", runs=runs))
    assert "cuda:1 (CUDA error: no kernel image" in result.text and "cuda:0" not in result.text
    assert "--device cpu" in result.fix


def test_bf16():
    assert doctor.check_bf16(lambda: True).ok is True
    assert doctor.check_bf16(lambda: False).ok is None  # information: 32-true still works


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_cache_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        failing(lambda: doctor.check_cache(folder))
    finally:
        folder.chmod(stat.S_IRWXU)


def test_cache_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("HISTOSEG_CACHE", str(blocker / "cache"))  # a folder under a file cannot exist
    result = failing(doctor.check_cache)
    assert str(blocker / "cache") in result.text and "(HISTOSEG_CACHE)" in result.text
    assert "export HISTOSEG_CACHE=" in result.fix
    assert not (blocker / "cache").exists()


def test_low_disk_space(tmp_path):
    result = failing(lambda: doctor.check_disk(tmp_path, free_bytes=lambda p: 300 * 2**20))
    assert result.text.startswith("only 0.3 GiB free at") and "HISTOSEG_CACHE" in result.fix
    assert doctor.check_disk(tmp_path, free_bytes=lambda p: 10 * 2**30).text == f"10.0 GiB free at {tmp_path}"


def test_exit_status_and_fix_lines():
    good = doctor.Check("a", True, "fine")
    info = doctor.Check("b", None, "no GPU")
    bad = doctor.Check("c", False, "broken", "do this")
    stream = io.StringIO()
    assert doctor.run_doctor(stream, [lambda: good, lambda: info]) == 0
    assert stream.getvalue() == "ok   a         fine\ninfo b         no GPU\nhistoseg doctor: all usable\n"
    stream = io.StringIO()
    assert doctor.run_doctor(stream, [lambda: good, lambda: bad, lambda: bad]) == 1
    assert stream.getvalue().splitlines()[1:] == [
        "FAIL c         broken", "               fix: do this", "FAIL c         broken", "               fix: do this",
        "histoseg doctor: 2 problems; fix above",
    ]  # fmt: skip
