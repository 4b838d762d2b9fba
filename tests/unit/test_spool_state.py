"""The spool's batched acknowledgements, its depth across restarts and the small notes kept beside it."""

from __future__ import annotations

from pathlib import Path

from edge_agent.sinks.spool import Spool


def test_acks_in_one_batch_and_depth_survives_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    stored = [spool.put("t", str(n).encode()) for n in range(5)]
    spool.ack(stored[0].seq, stored[1].seq, stored[1].seq)  # a repeated ack is harmless
    spool.ack()
    assert spool.depth == 3
    spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert reopened.depth == 3 and [m.payload for m in reopened.pending()] == [b"2", b"3", b"4"]


def test_bounds_count_from_the_depth_kept_in_memory(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_messages=10)
    for n in range(25):
        spool.put("t", str(n).encode())
        assert spool.depth == min(n + 1, 10)
    assert spool.dropped == 15 and spool.pending(limit=1)[0].payload == b"15"


def test_notes_are_kept_across_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    assert spool.note("ha_components") is None
    spool.set_note("ha_components", '{"a": "sensor"}')
    spool.set_note("ha_components", '{"b": "text"}')
    spool.close()
    assert Spool(tmp_path / "spool.db").note("ha_components") == '{"b": "text"}'
