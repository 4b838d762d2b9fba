"""The durable spool: order, acknowledgement, bounds that drop the oldest, and survival of kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from edge_agent.sinks.spool import Spool


def test_messages_come_back_in_order_until_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    first = spool.put("a/b", b"1")
    second = spool.put("a/c", b"2", retain=True, qos=0)
    assert [m.payload for m in spool.pending()] == [b"1", b"2"]
    assert spool.pending()[1].retain and spool.pending()[1].qos == 0
    assert first.id != second.id and len(first.id) == 32
    spool.ack(first.seq)
    assert [m.id for m in spool.pending()] == [second.id]
    assert spool.pending(after_seq=second.seq) == [] and spool.depth == 1


def test_when_full_the_oldest_are_dropped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_messages=3)
    for n in range(5):
        spool.put("t", str(n).encode())
    assert [m.payload for m in spool.pending()] == [b"2", b"3", b"4"]  # never the newest
    assert spool.dropped == 2 and spool.depth == 3


def test_too_old_messages_are_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_age_s=60)
    spool.put("t", b"old", created=1000.0)
    spool.put("t", b"new", created=1100.0)
    assert [m.payload for m in spool.pending()] == [b"new"] and spool.dropped == 1


WRITER = """
import os, sys
from pathlib import Path
from edge_agent.sinks.spool import Spool
spool = Spool(Path(sys.argv[1]))
for n in range(50):
    spool.put("t", str(n).encode(), message_id=f"m{n}", created=float(n))
print("written", flush=True)
os.kill(os.getpid(), 9)
"""


def test_what_was_spooled_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    done = subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and "written" in done.stdout
    reopened = Spool(path)
    messages = reopened.pending(limit=100)
    assert [m.id for m in messages] == [f"m{n}" for n in range(50)]
    assert [m.created for m in messages] == [float(n) for n in range(50)]  # original timestamps kept
    assert os.path.exists(path)
