"""Workers of one projection at once, for the concurrency tests of the frame's stores."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from projections.frame.batch import BatchProcessor
from projections.frame.records import Record


def on_two_workers(workers: Sequence[BatchProcessor], records: list[Record], size: int) -> None:
    """Each worker applies the records of its own partitions (even, odd), `size` per batch, at
    the same time as the other; returns when both are done."""

    def run(worker: BatchProcessor, share: list[Record]) -> None:
        for start in range(0, len(share), size):
            worker.process(share[start : start + size])

    shares = [[r for r in records if r.partition % len(workers) == i] for i in range(len(workers))]
    threads = [threading.Thread(target=run, args=p) for p in zip(workers, shares, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
