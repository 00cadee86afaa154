from pathlib import Path

import pytest

from trading_assets import atomic
from trading_assets.atomic import write_text_atomically


def test_a_file_is_written_then_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "state" / "CURRENT.json"
    write_text_atomically(path, "old\n")
    write_text_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in path.parent.iterdir()] == ["CURRENT.json"]  # no temporary file left


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "spec.json"
    write_text_atomically(path, "old\n")

    def full_disk(_descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomically(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]
