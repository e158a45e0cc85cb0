"""`process all`'s supervisor: an exited processor is started again; stop ends every child."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from processors.supervise import supervise


def test_a_child_that_exits_is_restarted_and_a_running_one_is_left_alone(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    flaky = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"
    steady = "import time; time.sleep(60)"
    stop = threading.Event()
    said: list[str] = []
    timer = threading.Timer(4.0, stop.set)
    timer.start()
    started = time.monotonic()
    exits = supervise(
        {"flaky": [sys.executable, "-c", flaky], "steady": [sys.executable, "-c", steady]},
        stop,
        say=said.append,
        poll_s=0.05,
        first_backoff_s=0.2,
    )
    assert time.monotonic() - started < 30  # stop ended the sleeping child too
    assert len(starts.read_text()) >= 3  # started again after each exit, with backoff
    assert exits["flaky"] and set(exits["flaky"]) == {3}
    assert exits["steady"] == []
    assert any("flaky exited with 3; restarting" in line for line in said)


def test_backoff_doubles_between_quick_exits(tmp_path: Path) -> None:
    stop = threading.Event()
    said: list[str] = []
    threading.Timer(2.0, stop.set).start()
    supervise(
        {"bad": [sys.executable, "-c", "raise SystemExit(1)"]},
        stop,
        say=said.append,
        poll_s=0.02,
        first_backoff_s=0.1,
    )
    delays = [line.rsplit("in ", 1)[1] for line in said if "restarting in" in line]
    assert len(delays) >= 2
    waits = [float(d.removesuffix(" s")) for d in delays]
    assert waits[:3] == [0.1, 0.2, 0.4]
