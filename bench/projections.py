"""Projection throughput, rebuild and freshness with the real workers, beside raw consume+decode."""

from __future__ import annotations

import gc
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import typer
from confluent_kafka import Consumer, Producer, TopicPartition
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.harness import Figure, throwaway_topics
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.publisher import SAFE_PRODUCER_CONFIG
from events.replay import log_codec
from events.topics import Family, event_topic, patient_key
from infra.runtime import Endpoints

BASELINE = "confluent-kafka consume+decode"


def _wired() -> list[str]:
    from processors.wiring import PROJECTIONS

    return list(PROJECTIONS)


EMPI = "empi"  # the patient index: its own runner and bookkeeping (processors/empi.py)
# Last: the index publishes its decisions to the person topic, which other projections read.
NAMES = (*_wired(), EMPI)
OFFERED_RATE = 1_000.0  # events/s during the freshness phase
POLL_S = 0.01  # how often the freshness poller reads the stored positions
WAIT_S = 300.0
WARM_UP = 50  # events the workers apply before the freshness clock starts
Say = Callable[[str], None]
Position = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class Framed:
    """An event ready for Kafka: its topic, key and Confluent-framed value."""

    family: Family
    topic: str
    key: bytes
    value: bytes


def simulated_load(count: int, seed: int) -> list[Event]:
    """A county's events with extra referral and transfer flows interleaved (see the docs).

    About 1 % of a county's events are referral events: too few to load the referral
    projection, so 25 % of the load are synthetic referral flows and 10 % transfer flows.
    """
    from bench.codec import county_events
    from projections.referrals.synthetic import referral_flows
    from projections.transfers.synthetic import transfer_flows

    county = county_events(max(100, int(count * 0.65)), seed)
    referrals = [e for f in referral_flows(seed, max(1, int(count * 0.25 / 3.2))) for e in f]
    # A seed of their own: with the referral flows' seed the two generators drew the same event
    # ids (392 ids for two different events in 40,000, 33 of them on the referral topic), and
    # which of the two a projection kept depended on the order it read the partitions in.
    transfers = [
        e for f in transfer_flows(seed + 1_000_000, max(1, int(count * 0.10 / 5.4))) for e in f
    ]
    return _interleave(random.Random(seed), [county, referrals, transfers])[:count]


def _interleave(rng: random.Random, streams: list[list[Event]]) -> list[Event]:
    """A random merge that keeps each stream's own order."""
    tags = [i for i, s in enumerate(streams) for _ in s]
    rng.shuffle(tags)
    iters = [iter(s) for s in streams]
    return [next(iters[i]) for i in tags]


def frame(events: Sequence[Event], consortium_id: str) -> list[Framed]:
    """Encode events for their family's topic, keyed by patient at the source."""
    codec = Codec(Catalog.load())
    return [
        Framed(
            e.family,
            event_topic(e.family, consortium_id),
            patient_key(e.envelope.source, e.envelope.patient_local_id),
            codec.encode_event(e),
        )
        for e in events
    ]


def publish_all(bootstrap: str, records: Sequence[Framed]) -> None:
    """Publish a backlog as fast as the producer goes, acknowledged by Kafka."""
    producer = Producer({"bootstrap.servers": bootstrap, **SAFE_PRODUCER_CONFIG})
    for r in records:
        while True:
            try:
                producer.produce(r.topic, key=r.key, value=r.value)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60) != 0:
        raise RuntimeError("the backlog was not acknowledged")


@contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A fresh migrated database for this run (projection bookkeeping is per database)."""
    from infra.migrate import apply_migrations

    name = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_conninfo(server_url, dbname=name)
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def worker(
    name: str, bootstrap: str, url: str, consortium_id: str, *options: str
) -> Iterator[None]:
    """`consortium process NAME` in its own process, as in production; stopped on exit."""
    env = {
        **os.environ,
        "CONSORTIUM_ID": consortium_id,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": url,
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "processors.cli", "process", name, *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def positions(cur: psycopg.Cursor[Any], name: str) -> dict[Position, int]:
    """The live generation's stored next offsets (committed with the rows they produced)."""
    if name == EMPI:  # the live index is schema `empi` (projections/empi/generations.py)
        rows = cur.execute("SELECT topic, partition, next_offset FROM empi.positions").fetchall()
        return {(t, p): int(n) for t, p, n in rows}
    rows = cur.execute(
        "SELECT o.topic, o.partition, o.next_offset FROM consumer_offsets o"
        " JOIN projection_generations g ON o.projection = g.projection || '.g' || g.generation"
        " WHERE g.projection = %s AND g.status = 'live'",
        (name,),
    ).fetchall()
    return {(t, p): int(n) for t, p, n in rows}


def high_watermarks(bootstrap: str, topics: Sequence[str]) -> dict[Position, int]:
    """The log end of every partition of these topics."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        ends: dict[Position, int] = {}
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                ends[(topic, p)] = int(high)
        return ends
    finally:
        consumer.close()


def topics_of(name: str, consortium_id: str) -> list[str]:
    """The event topics a projection reads."""
    from processors.wiring import projection

    if name == EMPI:
        from projections.empi.rebuild import index_topics

        return index_topics(consortium_id)

    return [event_topic(f, consortium_id) for f in projection(name).families]


def sustained(name: str, bootstrap: str, url: str, consortium_id: str) -> tuple[float, int]:
    """Events/s of a fresh worker through a backlog, from its first commit until caught up.

    The index's figure counts its patient topic only: the person topic it also reads holds
    decisions it ignores (its own, read back, and the synthetic transfer flows' links)."""
    topics = topics_of(name, consortium_id)
    if name == EMPI:
        topics = [event_topic(Family.PATIENT, consortium_id)]
    ends = high_watermarks(bootstrap, topics)
    total = sum(ends.values())
    first: tuple[float, int] | None = None
    spawned = time.perf_counter()
    with worker(name, bootstrap, url, consortium_id), psycopg.connect(url, autocommit=True) as c:
        deadline = time.monotonic() + WAIT_S
        while True:
            # Capped at the backlog: the index appends its decisions to a topic it reads.
            stored = positions(c.cursor(), name)
            done = sum(min(stored.get(tp, 0), end) for tp, end in ends.items())
            now = time.perf_counter()
            if first is None and done > 0:
                first = (now, done)  # the worker's start-up (faust, rebalance) is left out
            if done >= total:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} applied {done} of {total} records in {WAIT_S} s")
            time.sleep(0.02)
    assert first is not None
    if first[1] >= total:  # a tiny backlog fitted in one batch: time it with the start-up
        return total / (now - spawned), total
    return (total - first[1]) / (now - first[0]), total


def all_together(
    bootstrap: str, url: str, consortium_id: str, topics: Sequence[str], names: Sequence[str]
) -> tuple[float, int]:
    """Distinct events/s through every projection's worker at once, until all have caught up."""
    ends = high_watermarks(bootstrap, topics)
    total = sum(ends.values())
    readers = {n: set(topics_of(n, consortium_id)) for n in names}
    first: float | None = None
    with ExitStack() as workers, psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            workers.enter_context(worker(name, bootstrap, url, consortium_id))
        deadline = time.monotonic() + WAIT_S
        while True:
            stored = {n: positions(conn.cursor(), n) for n in names}
            now = time.perf_counter()
            if first is None and any(sum(v.values()) for v in stored.values()):
                first = now
            # An event counts once every projection that reads its topic has stored it.
            done = sum(
                min(end, *(stored[n].get(tp, 0) for n in names if tp[0] in readers[n]))
                for tp, end in ends.items()
            )
            if done >= total:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"together: {done} of {total} records in {WAIT_S} s")
            time.sleep(0.05)
    assert first is not None
    return total / max(now - first, 1e-3), total


def consume_and_decode(bootstrap: str, topics: Sequence[str]) -> float:
    """The baseline: confluent-kafka reads the same partitions from 0 and decodes every event.

    The clock starts at the first message in hand (connecting and the first fetch are not
    timed, as for the workers) and counts the records after it. Each ``consume()`` asks for at
    most the records still due: asked for more than the log holds, librdkafka waits out the
    whole timeout before it returns the partial batch (a 1 s idle tail was timed until
    2026-12-02, and the first batch's records counted without their fetch time).
    """
    codec = log_codec(Catalog.load())  # the processors' default decoding (trusts the log)
    ends = high_watermarks(bootstrap, topics)
    total = sum(ends.values())
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-baseline", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(t, p, 0) for (t, p) in ends])
    seen = 0
    start = time.perf_counter()
    try:
        while seen == 0 and total:  # the first record: the clock starts when it is in hand
            for m in consumer.consume(1, timeout=1.0):
                value = m.value()
                if m.error() is None and value is not None:
                    start = time.perf_counter()
                    codec.decode_event(value)
                    seen = 1
        while seen < total:
            batch = consumer.consume(min(5_000, total - seen), timeout=1.0)
            for m in batch:
                value = m.value()
                if m.error() is None and value is not None:
                    codec.decode_event(value)
                    seen += 1
        return max(seen - 1, 0) / (time.perf_counter() - start)
    finally:
        consumer.close()


def rebuild_rate(name: str, bootstrap: str, url: str, consortium_id: str) -> float:
    """Events/s of `projections rebuild NAME --no-switch` (the command's function, timed whole)."""
    from processors.rebuild import rebuild
    from processors.wiring import projection
    from projections.frame.deadletters import KafkaDeadLetters

    if name == EMPI:
        return _index_rebuild_rate(bootstrap, url, consortium_id)
    with KafkaDeadLetters(bootstrap, consortium_id, name) as dead_letters:
        start = time.perf_counter()
        result = rebuild(
            projection(name),
            bootstrap_servers=bootstrap,
            database_url=url,
            consortium_id=consortium_id,
            dead_letters=dead_letters,
            switch=False,
        )
        return result.outcome.records / (time.perf_counter() - start)


def _index_key() -> None:
    """The index refuses to run without its identity hash key: one for this run when unset."""
    from projections.empi.config import HASH_KEY_VARIABLE

    os.environ.setdefault(HASH_KEY_VARIABLE, secrets.token_hex(16))


def _index_rebuild_rate(bootstrap: str, url: str, consortium_id: str) -> float:
    """Events/s of `empi rebuild --no-switch`: the live index's batches replayed from offset 0."""
    from projections.empi import rebuild as index
    from projections.empi.config import index_config
    from projections.frame.deadletters import KafkaDeadLetters

    codec = log_codec(Catalog.load())
    with KafkaDeadLetters(bootstrap, consortium_id, EMPI) as dead_letters:
        start = time.perf_counter()
        result = index.rebuild(
            index_config(),
            codec,
            bootstrap_servers=bootstrap,
            database_url=url,
            consortium_id=consortium_id,
            dead_letters=dead_letters,
            switch=False,
        )
        elapsed = time.perf_counter() - start
    out = result.outcome
    # Not the ignored records (decisions on the person topic the index does not read): since
    # 2026-12-07 the bench's transfer flows put the index's links there for the transfers.
    replayed = out.indexed + out.decisions + out.stale + out.dead_lettered
    return replayed / elapsed


@dataclass
class Freshness:
    """Per projection, milliseconds from publishing an event to seeing its effect stored."""

    stored_ms: dict[str, list[float]]
    consumed_ms: list[float]  # the baseline: a plain consumer receiving and decoding it


def freshness(
    bootstrap: str,
    url: str,
    consortium_id: str,
    records: Sequence[Framed],
    rate: float,
    names: Sequence[str],
) -> Freshness:
    """Publish at a fixed rate while polling stored positions and a plain consumer's reads."""
    readers = {n: set(topics_of(n, consortium_id)) for n in names}
    sent: dict[tuple[str, int, int], float] = {}
    polls: list[tuple[float, dict[str, dict[Position, int]]]] = []
    received: dict[tuple[str, int, int], float] = {}
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            while not stop.is_set():
                seen = {n: positions(cur, n) for n in readers}
                polls.append((time.perf_counter(), seen))
                time.sleep(POLL_S)

    def consume() -> None:
        codec = log_codec(Catalog.load())
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-fresh-{uuid.uuid4().hex[:6]}"}
        )
        ends = high_watermarks(bootstrap, sorted(set().union(*readers.values())))
        consumer.assign([TopicPartition(t, p, off) for (t, p), off in ends.items()])
        while not stop.is_set():
            for m in consumer.consume(500, timeout=0.05):
                value = m.value()
                if m.error() is None and value is not None:
                    codec.decode_event(value)
                    where: Any = (m.topic(), m.partition(), m.offset())
                    received[where] = time.perf_counter()
        consumer.close()

    threads = [threading.Thread(target=poll), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the plain consumer is assigned before the first event goes out
    _paced(bootstrap, records, rate, sent)
    _wait_until_stored(polls, sent, readers)
    stop.set()
    for t in threads:
        t.join()
    return _latencies(sent, polls, received, readers)


def _paced(
    bootstrap: str, records: Sequence[Framed], rate: float, sent: dict[tuple[str, int, int], float]
) -> None:
    """Produce record i at start + i/rate; the send time is when produce() was called."""
    producer = Producer({"bootstrap.servers": bootstrap, **SAFE_PRODUCER_CONFIG})
    start = time.perf_counter()
    for i, r in enumerate(records):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        at = time.perf_counter()

        def delivered(err: Any, msg: Any, at: float = at) -> None:
            if err is None:
                sent[(msg.topic(), msg.partition(), msg.offset())] = at

        producer.produce(r.topic, key=r.key, value=r.value, on_delivery=delivered)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("the paced load was not acknowledged")


def _wait_until_stored(
    polls: list[tuple[float, dict[str, dict[Position, int]]]],
    sent: dict[tuple[str, int, int], float],
    readers: dict[str, set[str]],
) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if polls and all(
            polls[-1][1][n].get((t, p), 0) > o
            for (t, p, o) in sent
            for n in readers
            if t in readers[n]
        ):
            return
        time.sleep(0.1)
    raise RuntimeError("the projections did not store the paced load in time")


def _latencies(
    sent: dict[tuple[str, int, int], float],
    polls: list[tuple[float, dict[str, dict[Position, int]]]],
    received: dict[tuple[str, int, int], float],
    readers: dict[str, set[str]],
) -> Freshness:
    """For each event and projection reading it: the first poll whose position passed it."""
    stored: dict[str, list[float]] = {n: [] for n in readers}
    for n, topics in readers.items():
        pending = sorted((o, t, p, at) for (t, p, o), at in sent.items() if t in topics)
        for t, p in sorted({(t, p) for _o, t, p, _at in pending}):
            mine = [(o, at) for o, tt, pp, at in pending if (tt, pp) == (t, p)]
            i = 0
            for polled, seen in polls:
                while i < len(mine) and seen[n].get((t, p), 0) > mine[i][0]:
                    stored[n].append((polled - mine[i][1]) * 1000)
                    i += 1
    consumed = [(received[k] - at) * 1000 for k, at in sent.items() if k in received]
    return Freshness(stored, consumed)


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (1–99) of the values."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(
    events: int,
    *,
    fresh_seconds: float = 20.0,
    rate: float = OFFERED_RATE,
    say: Say = lambda _m: None,
    endpoints: Endpoints | None = None,
    names: Sequence[str] = NAMES,  # in NAMES order (see selected)
) -> list[Figure]:
    """Start or reuse the servers, load a fresh bench consortium, measure, return the figures."""
    from infra.runtime import ensure_up

    endpoints = endpoints or ensure_up(report=say)
    _index_key()
    consortium_id = "bench" + uuid.uuid4().hex[:8]
    bootstrap = endpoints.bootstrap_servers
    throwaway_topics(bootstrap, consortium_id)
    say(f"simulating {events:,} events (county week + referral and transfer flows)")
    backlog = frame(simulated_load(events, seed=7), consortium_id)
    paced_count = int(fresh_seconds * rate)
    read = {Family.PATIENT, Family.ENCOUNTER, Family.REFERRAL}
    later = frame(simulated_load((paced_count + WARM_UP) * 2, seed=8), consortium_id)
    paced = [r for r in later if r.family in read][: paced_count + WARM_UP]
    say(f"publishing the backlog to {consortium_id}.*")
    publish_all(bootstrap, backlog)
    # The rebuild and the baseline run in this process: keep the prepared loads out of the
    # cyclic collector's way, as a rebuild process of its own would not hold them.
    gc.collect()
    gc.freeze()
    figures: list[Figure] = []
    with bench_database(endpoints.database_url) as url, _unfrozen_after():
        rates: dict[str, tuple[float, float, float, int]] = {}
        for name in names:
            topics = topics_of(name, consortium_id)
            say(f"{name}: baseline consume+decode of its topics")
            baseline = consume_and_decode(bootstrap, topics)
            say(f"{name}: a fresh `consortium process {name}` through the backlog")
            through, total = sustained(name, bootstrap, url, consortium_id)
            say(f"{name}: {total:,} records at {through:,.0f} events/s; rebuilding")
            rebuilt = rebuild_rate(name, bootstrap, url, consortium_id)
            rates[name] = (baseline, through, rebuilt, total)
    with bench_database(endpoints.database_url) as url, _unfrozen_after():
        union = sorted({t for n in names for t in topics_of(n, consortium_id)})
        say(
            f"all {len(names)} projections together: baseline consume+decode of {len(union)} topics"
        )
        together_baseline = consume_and_decode(bootstrap, union)
        together, together_total = all_together(bootstrap, url, consortium_id, union, names)
        say(f"together: {together_total:,} records at {together:,.0f} events/s")
        say(f"freshness: all workers, {len(paced):,} events at {rate:,.0f} events/s")
        with ExitStack() as workers:
            for name in names:
                workers.enter_context(worker(name, bootstrap, url, consortium_id))
            # A few events first: the clock starts once every worker has applied something.
            publish_all(bootstrap, paced[:WARM_UP])
            _wait_caught_up(bootstrap, url, consortium_id, names)
            fresh = freshness(bootstrap, url, consortium_id, paced[WARM_UP:], rate, names)
    for name, (baseline, through, rebuilt, _total) in rates.items():
        figures.append(
            Figure(
                f"projections.{name}.sustained_events_per_s",
                through,
                "events/s",
                baseline,
                BASELINE,
            )
        )
        figures.append(
            Figure(
                f"projections.{name}.rebuild_events_per_s", rebuilt, "events/s", baseline, BASELINE
            )
        )
    raw50, raw99 = percentile(fresh.consumed_ms, 50), percentile(fresh.consumed_ms, 99)
    for name, values in fresh.stored_ms.items():
        figures.append(
            Figure(
                f"projections.{name}.freshness_p50_ms",
                percentile(values, 50),
                "ms",
                raw50,
                BASELINE,
            )
        )
        figures.append(
            Figure(
                f"projections.{name}.freshness_p99_ms",
                percentile(values, 99),
                "ms",
                raw99,
                BASELINE,
            )
        )
    pooled = [v for values in fresh.stored_ms.values() for v in values]
    slowest = min(rates, key=lambda n: rates[n][1])
    slowest_rebuild = min(rates, key=lambda n: rates[n][2])
    headline = [
        Figure(
            "projections.all_together_events_per_s",
            together,
            "events/s",
            together_baseline,
            BASELINE,
        ),
        Figure(
            "projections.sustained_events_per_s",
            rates[slowest][1],
            "events/s",
            rates[slowest][0],
            BASELINE,
        ),
        Figure(
            "projections.rebuild_events_per_s",
            rates[slowest_rebuild][2],
            "events/s",
            rates[slowest_rebuild][0],
            BASELINE,
        ),
        Figure("projections.freshness_p50_ms", percentile(pooled, 50), "ms", raw50, BASELINE),
        Figure("projections.freshness_p99_ms", percentile(pooled, 99), "ms", raw99, BASELINE),
    ]
    return headline + figures


def selected(names: Sequence[str]) -> list[str]:
    """The projections to measure, in NAMES order (the index last: it appends to a read topic)."""
    unknown = set(names) - set(NAMES)
    if unknown or not names:
        raise ValueError(f"unknown projections {sorted(unknown)}; known: {', '.join(NAMES)}")
    return [n for n in NAMES if n in names]


@contextmanager
def _unfrozen_after() -> Iterator[None]:
    """Give the frozen objects back to the collector at the end (the caller may live on)."""
    try:
        yield
    finally:
        gc.unfreeze()


def _wait_caught_up(bootstrap: str, url: str, consortium_id: str, names: Sequence[str]) -> None:
    """Both workers have taken the group's partitions and stand at the log end."""
    deadline = time.monotonic() + WAIT_S
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        while time.monotonic() < deadline:
            behind = 0
            for name in names:
                ends = high_watermarks(bootstrap, topics_of(name, consortium_id))
                stored = positions(cur, name)
                behind += sum(max(0, end - stored.get(tp, 0)) for tp, end in ends.items())
            if behind == 0:
                return
            time.sleep(0.2)
    raise RuntimeError("the workers did not catch up before the freshness phase")


def projections_command(
    events: Annotated[int, typer.Option("--events", min=1_000, help="Backlog events.")] = 40_000,
    seconds: Annotated[
        float, typer.Option("--seconds", min=1.0, help="Duration of the paced freshness load.")
    ] = 20.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per figure.")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--projection", "-p", help=f"Measure only these (repeat; {', '.join(NAMES)})."
        ),
    ] = None,
) -> None:
    """Projection workers through a backlog, rebuild, and freshness at 1,000 events/s."""
    from rich.console import Console

    from bench.harness import dropping_throwaways, report

    console = Console(stderr=True)
    names = selected(only or NAMES)
    with dropping_throwaways():
        figures = measure(events, fresh_seconds=seconds, say=console.print, names=names)
    report(figures, as_json=as_json)
