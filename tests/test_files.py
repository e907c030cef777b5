"""Output files are written whole or not at all (``brokerguard.files``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from brokerguard.files import replaced, write_bytes, write_text


class Interrupted(Exception):
    """Stands for a crash half-way through writing a file."""


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_litter(tmp_path: Path) -> None:
    target = tmp_path / "monthly.csv"
    target.write_text("last month's good table\n")
    with pytest.raises(Interrupted), replaced(target) as stream:
        stream.write("half of the new ")
        raise Interrupted
    assert target.read_text() == "last month's good table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monthly.csv"]


def test_a_write_that_fails_before_any_file_existed_leaves_none(tmp_path: Path) -> None:
    with pytest.raises(Interrupted), replaced(tmp_path / "new.ndjson", "wb") as stream:
        stream.write(b"{}\n")
        raise Interrupted
    assert list(tmp_path.iterdir()) == []


def test_a_complete_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "c.csv"
    target.write_text("old")
    with replaced(target, "w", encoding="utf-8-sig", newline="") as stream:
        stream.write("口座\r\n")
    assert target.read_bytes() == "\ufeff口座\r\n".encode()
    write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    write_text(target, "二\n")
    assert target.read_text(encoding="utf-8") == "二\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]


def test_a_link_is_followed_and_kept(tmp_path: Path) -> None:
    """A report path that is a link to a shared folder replaces the file there, not the link."""
    real = tmp_path / "shared" / "report.csv"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "report.csv"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_the_new_file_has_the_permissions_a_plain_open_gives(tmp_path: Path) -> None:
    """A temporary file from ``mkstemp`` is 0600; a report others read must not become so."""
    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "a.csv", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.csv").stat().st_mode) == 0o644


def test_a_device_is_written_directly_and_its_error_names_it() -> None:
    """``/dev/full`` cannot be renamed over (and must not be): it is written as it is."""
    write_text("/dev/null", "gone")
    with pytest.raises(OSError, match="No space left on device") as raised:
        write_bytes("/dev/full", b"x" * 10_000)
    assert raised.value.filename == "/dev/full"


def test_an_unwritable_folder_is_named_by_the_path_asked_for(tmp_path: Path) -> None:
    """Not by the hidden temporary name the user never typed."""
    missing = tmp_path / "no-such-folder" / "out.json"
    with pytest.raises(FileNotFoundError) as raised:
        write_text(missing, "{}")
    assert raised.value.filename == str(missing)


def test_only_write_modes_are_taken(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be"), replaced(tmp_path / "x", "a"):
        pass
