"""The journal's compaction check reads its size from memory, kept equal to the file's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus.journal import RoundUsed
from ganglion.runtime.journal import Journal


def test_size_follows_appends_load_and_compaction_without_a_stat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal"
    journal = Journal(path, compact_bytes=100)
    assert journal.load() == []
    assert not journal.needs_compaction()
    stats: list[Path] = []
    real_stat = Path.stat

    def counting_stat(self: Path, **kwargs: bool) -> os.stat_result:
        stats.append(self)
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", counting_stat)
    rounds = 0
    while not journal.needs_compaction():
        assert os.path.getsize(path) <= 100 if rounds else not os.path.exists(path)
        rounds += 1
        journal.append([RoundUsed(round=rounds)])
    assert os.path.getsize(path) > 100
    journal.replace([RoundUsed(round=rounds)])
    assert not journal.needs_compaction()
    journal.append([RoundUsed(round=rounds + 1)] * 20)
    assert journal.needs_compaction() and os.path.getsize(path) > 100
    stats_by_journal = [p for p in stats if p == path]
    assert stats_by_journal == [], "the size is known without asking the file system"

    again = Journal(path, compact_bytes=10)
    assert again.load() == [RoundUsed(round=rounds)] + [RoundUsed(round=rounds + 1)] * 20
    assert again.needs_compaction() == (os.path.getsize(path) > 10)
