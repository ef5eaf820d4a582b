"""ReportLimiter and excerpt: which bad plugin input is logged, and how much of it."""

from __future__ import annotations

import pytest

from ganglion.runtime._bus_report import EXCERPT_BYTES, ReportLimiter, clip, excerpt


def test_excerpt_of_a_megabyte_is_short_and_names_the_size() -> None:
    frame = bytes(range(256)) * 4096  # 1 MiB
    text = excerpt(frame)
    assert text.startswith(f"{len(frame)} bytes: 000102")
    assert text.endswith("...")
    assert len(text) <= 2 * EXCERPT_BYTES + 30


def test_excerpt_of_a_short_frame_is_whole() -> None:
    assert excerpt(b"\xa1ax\x01") == "4 bytes: a1617801"
    assert excerpt(b"") == "0 bytes: "


def test_clip_cuts_long_text_only() -> None:
    assert clip("short") == "short"
    assert clip("x" * 1000, 10) == "x" * 10 + "..."


def test_only_the_first_of_each_peer_and_reason_is_logged() -> None:
    limiter = ReportLimiter()
    answers = [limiter.first("pid 7", "bad_payloads") for _ in range(100)]
    assert answers == [True] + [False] * 99
    assert limiter.first("pid 7", "bad_type_names")  # another reason: its own first line
    assert limiter.first("pid 8", "bad_payloads")  # another plugin: its own first line
    assert limiter.suppressed_total == 99
    assert limiter.take_summary() == {"bad_payloads": 99}
    assert limiter.take_summary() == {}  # a summary resets; the total does not
    assert limiter.suppressed_total == 99


def test_summary_counts_every_reason_in_order() -> None:
    limiter = ReportLimiter()
    for reason in ("rejected", "bad_frames", "rejected", "bad_frames", "rejected"):
        limiter.first("tcp", reason)
    assert limiter.take_summary() == {"bad_frames": 1, "rejected": 2}


def test_the_table_of_logged_pairs_is_bounded() -> None:
    limiter = ReportLimiter(max_keys=3)
    firsts = [limiter.first(f"pid {n}", "bad_frames") for n in range(10_000)]
    assert firsts.count(True) == 3
    assert limiter.remembered == 3
    assert limiter.take_summary() == {"bad_frames": 9_997}


def test_negative_table_size_is_refused() -> None:
    with pytest.raises(ValueError):
        ReportLimiter(max_keys=-1)
