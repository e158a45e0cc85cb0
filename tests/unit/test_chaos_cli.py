"""The campaign and the soak unwind on SIGTERM as on Ctrl-C, so their servers are stopped."""

from __future__ import annotations

import os
import signal
import time

import pytest

from chaos.cli import _terminate_as_interrupt


def test_sigterm_raises_keyboard_interrupt_so_finally_blocks_run() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stopped: list[str] = []
    try:
        _terminate_as_interrupt()
        with pytest.raises(KeyboardInterrupt):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler interrupts this
            finally:
                stopped.append("servers")
    finally:
        signal.signal(signal.SIGTERM, before)
    assert stopped == ["servers"]
