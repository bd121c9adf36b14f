import io
import json
import tarfile
import zipfile

import pytest

from imprint.archive import ArchiveError, archive_stem, extract_archive


def _tar_with(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_hostile_tar_members_are_refused_and_reported(tmp_path):
    link = tarfile.TarInfo("train/escape")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../etc/passwd"
    abs_link = tarfile.TarInfo("train/abs")
    abs_link.type = tarfile.SYMTYPE
    abs_link.linkname = "/etc/passwd"
    fifo = tarfile.TarInfo("train/pipe")
    fifo.type = tarfile.FIFOTYPE
    archive = tmp_path / "evil.tar.gz"
    _tar_with(archive, [_file("train/ok.txt", b"fine"), _file("../outside.txt"), _file("/abs.txt"),
                        _file("train/../../up.txt"), (link, None), (abs_link, None), (fifo, None)])
    target = tmp_path / "out" / "evil"
    report = extract_archive(archive, target)
    assert (target / "train" / "ok.txt").read_bytes() == b"fine"
    refused = {r["member"] for r in report.refused}
    assert refused == {"../outside.txt", "/abs.txt", "train/../../up.txt", "train/escape", "train/abs",
                       "train/pipe"}
    assert report.extracted == 1
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "out" / "up.txt").exists()
    assert not (target / "train" / "escape").exists()


def test_hostile_zip_members_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/ok.txt", "fine")
        zf.writestr("../../evil.txt", "bad")
        zf.writestr("/etc/evil.txt", "bad")
    report = extract_archive(archive, tmp_path / "x")
    assert {r["member"] for r in report.refused} == {"../../evil.txt", "/etc/evil.txt"}
    assert (tmp_path / "x" / "a" / "ok.txt").read_text() == "fine"
    assert not (tmp_path.parent / "evil.txt").exists()


def test_extraction_happens_once_and_is_redone_after_a_kill(tmp_path):
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tf:
        info, data = _file("v/1.txt", b"one")
        tf.addfile(info, io.BytesIO(data))
    target = tmp_path / "t"
    assert extract_archive(archive, target).reused is False
    assert extract_archive(archive, target).reused is True
    # a killed extraction leaves only the .partial folder: the next run redoes it
    (tmp_path / "t.partial").mkdir()
    (target / ".imprint-extracted.json").unlink()
    again = extract_archive(archive, target)
    assert again.reused is False and (target / "v" / "1.txt").read_bytes() == b"one"
    assert not (tmp_path / "t.partial").exists()


@pytest.mark.parametrize("name", ["broken.zip", "broken.tar.gz"])
def test_unreadable_archive_says_to_download_again(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(b"this is not an archive")
    with pytest.raises(ArchiveError, match="download it again"):
        extract_archive(bad, tmp_path / "x")


def test_truncated_tar_keeps_what_was_read_and_reports_the_rest(tmp_path):
    archive = tmp_path / "cut.tar"
    with tarfile.open(archive, "w") as tf:
        for i in range(3):
            info, data = _file(f"f{i}.bin", bytes(4096))
            tf.addfile(info, io.BytesIO(data))
    raw = archive.read_bytes()
    archive.write_bytes(raw[: 512 * 2 + 4096 + 1000])  # second member cut short
    report = extract_archive(archive, tmp_path / "x")
    assert (tmp_path / "x" / "f0.bin").stat().st_size == 4096
    assert report.refused, json.dumps(report.to_dict())


def test_archive_stem():
    from pathlib import Path

    assert archive_stem(Path("train.tar.gz")) == "train"
    assert archive_stem(Path("VIPSeg_720P.zip")) == "VIPSeg_720P"
