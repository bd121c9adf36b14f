"""Official archives (.zip, .tar, .tar.gz/.tgz) unpacked safely and once.

A member that would land outside the target folder (absolute path, ``..``, a link
pointing out, a device or fifo) is refused and reported; the rest is extracted.
Extraction goes to a temporary folder renamed when complete, with a marker file,
so a killed extraction is redone and a finished one is never repeated.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from imprint.errors import ImprintError
from imprint.io import read_json, replace_dir, write_json_atomic

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_MARKER = ".imprint-extracted.json"


class ArchiveError(ImprintError, ValueError):
    """An archive that cannot be read at all."""


@dataclass
class ExtractReport:
    archive: str
    target: str
    extracted: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"archive": self.archive, "target": self.target, "extracted": self.extracted,
                "refused": self.refused, "reused": self.reused}


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _safe_relpath(name: str) -> str | None:
    """The member's path relative to the target ("" for the root itself), or None if it would escape it."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return None
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if any(p == ".." for p in parts):
        return None
    return "/".join(p for p in parts if p not in ("", "."))


def _extract_zip(src: Path, dst: Path, report: ExtractReport) -> None:
    try:
        zf = zipfile.ZipFile(src)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{src} is not a readable zip archive ({exc}); download it again") from None
    with zf:
        for info in zf.infolist():
            rel = _safe_relpath(info.filename)
            if rel == "":
                continue
            mode = (info.external_attr >> 16) & 0o170000
            if rel is None:
                report.refused.append({"member": info.filename, "reason": "path escapes the target folder"})
                continue
            if mode == 0o120000:
                report.refused.append({"member": info.filename, "reason": "symbolic link"})
                continue
            out = dst / rel
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as fin, open(out, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                out.unlink(missing_ok=True)
                report.refused.append({"member": info.filename, "reason": f"unreadable member: {exc}"})
                continue
            report.extracted += 1


def _extract_tar(src: Path, dst: Path, report: ExtractReport) -> None:
    try:
        tf = tarfile.open(src, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{src} is not a readable tar archive ({exc}); download it again") from None
    with tf:
        try:
            for member in tf:
                rel = _safe_relpath(member.name)
                if rel == "":
                    continue
                if rel is None:
                    report.refused.append({"member": member.name, "reason": "path escapes the target folder"})
                    continue
                if member.issym() or member.islnk():
                    target = PurePosixPath(rel).parent / member.linkname if member.issym() else PurePosixPath(member.linkname)
                    if member.linkname.startswith("/") or _safe_relpath(str(target)) is None:
                        report.refused.append({"member": member.name, "reason": "link pointing outside the target folder"})
                        continue
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    report.refused.append({"member": member.name, "reason": "device, fifo or other special file"})
                    continue
                try:
                    tf.extract(member, dst, filter="data")
                except (tarfile.TarError, OSError) as exc:
                    report.refused.append({"member": member.name, "reason": f"refused by tar data filter: {exc}"})
                    continue
                if member.isfile():
                    report.extracted += 1
        except (tarfile.TarError, OSError, EOFError) as exc:
            report.refused.append({"member": "<rest of archive>", "reason": f"archive truncated or corrupt: {exc}"})


def extract_archive(src: Path, target: Path) -> ExtractReport:
    """Extract ``src`` into ``target`` (once). Returns what was extracted and refused."""
    src = Path(src)
    target = Path(target)
    report = ExtractReport(str(src), str(target))
    marker = target / _MARKER
    stat = src.stat()
    key = {"archive": str(src.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    if marker.is_file():
        saved = read_json(marker)
        if saved.get("key") == key:
            report.extracted = saved["extracted"]
            report.refused = saved["refused"]
            report.reused = True
            return report
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if src.name.lower().endswith(".zip"):
        _extract_zip(src, tmp, report)
    else:
        _extract_tar(src, tmp, report)
    write_json_atomic(tmp / _MARKER, {"key": key, "extracted": report.extracted, "refused": report.refused})
    replace_dir(tmp, target)
    return report
