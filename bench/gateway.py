"""Gateway throughput and latency on the county hospital's simulated events, beside raw produce."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from confluent_kafka import Producer

from bench.harness import Figure, throwaway_topics
from events.envelope import Event
from events.publisher import SAFE_PRODUCER_CONFIG
from gateway.launch import gateway_process

BASELINE = "confluent-kafka produce"
BATCH = 500
BATCH_CLIENTS = 4
SINGLE_RATE = 500.0
# MLLP connections, one message in flight on each: an interface each. A county consortium of ~20
# members, each with HIS, LIS and RIS feeds, keeps 30–60 of them open (docs/benchmarks.md).
HL7_CONNECTIONS = 32
# Fewer interfaces, one round each: with one message in flight an interface is bound by the
# round trip (publish + acknowledgement), not by the gateway's CPU.
HL7_SWEEP = (1, 4, 16)
HL7_MESSAGES = 2_000
ROUNDS = 3
Say = Callable[[str], None]


@dataclass(frozen=True)
class Load:
    """One institution's simulated events: as JSON, as framed Kafka records, as HL7 frames."""

    institution: str
    events: list[Event]
    records: list[tuple[str, bytes, bytes]]  # topic, key, framed Avro value
    hl7_events: list[Event]  # the events an HL7 message maps to (some types have no mapping)


def county_hospital_load(count: int, consortium_id: str, seed: int = 7) -> Load:
    """The events of the institution with most events in a simulated county: the county hospital."""
    from collections import Counter

    from bench.codec import county_events
    from events.catalog import Catalog
    from events.codec import Codec
    from events.topics import event_topic, patient_key
    from simulator.gateway_sink import to_hl7

    # The county hospital publishes about a third of a county's events; simulate enough of them.
    everything = county_events(count * 4, seed)
    institution = Counter(e.envelope.source for e in everything).most_common(1)[0][0]
    events = [e for e in everything if e.envelope.source == institution][:count]
    codec = Codec(Catalog.load())
    records = [
        (
            event_topic(e.family, consortium_id),
            patient_key(e.envelope.source, e.envelope.patient_local_id),
            codec.encode_event(e),
        )
        for e in events
    ]
    hl7_events = [e for e in events if to_hl7(e, "", "C") is not None]
    return Load(institution, events, records, hl7_events)


def renamed(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The events as JSON-ready dicts with new event ids, so that no round replays another."""
    out = []
    for event in events:
        data = event.model_dump(mode="json")
        data["envelope"]["event_id"] = str(uuid.uuid4())
        out.append(data)
    return out


def warmed_producer(bootstrap: str, records: Sequence[tuple[str, bytes, bytes]]) -> Producer:
    """A bare producer (acks=all, idempotent: SAFE_PRODUCER_CONFIG) ready before any clock starts:
    connected, its producer id acquired, the metadata of every topic of `records` fetched, and one
    record per topic acknowledged (so each partition leader's connection is up too)."""
    producer = Producer({"bootstrap.servers": bootstrap, **SAFE_PRODUCER_CONFIG})
    firsts = {topic: (key, value) for topic, key, value in reversed(records)}
    for topic in firsts:
        producer.list_topics(topic, timeout=30)
    failures: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    for topic, (key, value) in firsts.items():
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
    if producer.flush(60) or failures:
        raise RuntimeError(f"the baseline producer could not warm up: {failures[:1]}")
    return producer


def raw_produce_rate(producer: Producer, records: Sequence[tuple[str, bytes, bytes]]) -> float:
    """Events/s of a warmed producer until all records are acknowledged (only this is timed)."""
    acked = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is None:
            acked += 1

    start = time.perf_counter()
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - start
    if acked != len(records):
        raise RuntimeError(f"Kafka acknowledged {acked} of {len(records)} baseline records")
    return len(records) / elapsed


def raw_produce_latencies(
    producer: Producer, records: Sequence[tuple[str, bytes, bytes]]
) -> list[float]:
    """Milliseconds from produce to acknowledgement of one record at a time (no batching)."""
    latencies = []
    for topic, key, value in records:
        start = time.perf_counter()
        producer.produce(topic, value=value, key=key)
        producer.flush(30)
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the inclusive method."""
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


async def post_batches(base_url: str, token: str, bodies: list[bytes], clients: int) -> float:
    """Events/s of POSTing JSON batches through `clients` concurrent connections."""
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    accepted = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            response = await http.post("/v1/events", content=body, headers=headers)
            if response.status_code != 202:
                raise RuntimeError(f"batch refused: {response.status_code} {response.text[:300]}")
            accepted += response.json()["accepted"]

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return accepted / elapsed


class Http1Connections:
    """A few keep-alive HTTP/1.1 connections spoken by hand: a load generator far cheaper than
    httpx, which at 500 requests/s spent more CPU than the gateway it measured."""

    def __init__(self, port: int, token: str, connections: int) -> None:
        self._port, self._size = port, connections
        self._head = (
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        """Connect every connection."""
        for _ in range(self._size):
            self._idle.put_nowait(await asyncio.open_connection("127.0.0.1", self._port))

    async def post(self, body: bytes) -> int:
        """POST one body on a free connection (waiting for one); the response status."""
        reader, writer = await self._idle.get()
        try:
            writer.write(self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in lines
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            return int(lines[0].split()[1])
        finally:
            self._idle.put_nowait((reader, writer))

    async def close(self) -> None:
        """Close every connection."""
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()


async def post_open_loop(
    port: int, token: str, bodies: list[bytes], rate: float, say: Say = lambda _: None
) -> tuple[float, list[float]]:
    """Single-event requests sent at fixed times; (completed/s, latencies from the schedule, ms)."""
    latencies: list[float] = []
    failures: list[str] = []
    # Enough connections for 100 ms of requests in flight; beyond that they queue here, which
    # the latency from the scheduled time counts (no coordinated omission).
    http = Http1Connections(port, token, max(8, int(rate / 10)))
    await http.open()

    async def one(body: bytes, due: float) -> None:
        try:
            status = await http.post(body)
            if status != 202:
                failures.append(str(status))
        except (OSError, asyncio.IncompleteReadError) as exc:
            failures.append(f"{type(exc).__name__} {exc}")
        latencies.append((time.perf_counter() - due) * 1000)

    tasks = []
    start = time.perf_counter() + 0.1
    for i, body in enumerate(bodies):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await http.close()
    if failures:
        # An overloaded gateway is a result, not a crash: its latencies count, the rate does not.
        say(f"  {len(failures)} of {len(bodies)} single-event requests failed, e.g. {failures[0]}")
    return (len(bodies) - len(failures)) / elapsed, latencies


async def send_hl7(port: int, frames: list[bytes], connections: int) -> float:
    """Messages/s over `connections` MLLP connections, one message in flight on each."""
    from gateway.hl7.mllp import END_BLOCK

    queue = list(reversed(frames))
    refused: list[str] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                writer.write(queue.pop())
                await writer.drain()
                ack = (await reader.readuntil(END_BLOCK)).decode()
                if "\rMSA|AA|" not in ack:
                    refused.append(ack.replace("\r", "\n"))
        finally:
            writer.close()
            await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    if refused:
        raise RuntimeError(f"{len(refused)} HL7 messages not AA, e.g.\n{refused[0]}")
    return len(frames) / elapsed


class CpuMeter:
    """CPU seconds of this process, of the gateway process and of the whole machine."""

    def __init__(self, gateway_pid: int) -> None:
        self._pid = gateway_pid
        self._tick = os.sysconf("SC_CLK_TCK")

    def _gateway(self) -> float:
        pids = [self._pid, *_children(self._pid)]
        total = 0.0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / self._tick
        return total

    def _machine(self) -> tuple[float, float]:
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
        idle = cpu[3] + cpu[4]
        return (sum(cpu) - idle) / self._tick, sum(cpu) / self._tick

    def _self(self) -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @contextmanager
    def measure(self, what: str, say: Say) -> Iterator[None]:
        """Say how many cores the gateway, this load generator and everything else used."""
        g0, s0, (b0, _), w0 = self._gateway(), self._self(), self._machine(), time.perf_counter()
        yield
        g1, s1, (b1, _), w1 = self._gateway(), self._self(), self._machine(), time.perf_counter()
        wall = w1 - w0
        gw, me, busy = (g1 - g0) / wall, (s1 - s0) / wall, (b1 - b0) / wall
        say(
            f"  {what}: cores used — gateway {gw:.2f}, load generator {me:.2f}, "
            f"broker+database+rest {max(0.0, busy - gw - me):.2f} "
            f"(machine {busy:.2f} of {os.cpu_count()})"
        )


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            direct = [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []
    return [c for d in direct for c in (d, *_children(d))]


def _json_bodies(events: Sequence[Event], size: int) -> list[bytes]:
    data = renamed(events)
    if size == 1:
        return [json.dumps(d, ensure_ascii=False).encode() for d in data]
    return [
        json.dumps(data[i : i + size], ensure_ascii=False).encode()
        for i in range(0, len(data), size)
    ]


def _hl7_frames(events: Sequence[Event], token: str, round_id: str) -> list[bytes]:
    from gateway.hl7.mllp import frame
    from simulator.gateway_sink import to_hl7

    frames = []
    for i, event in enumerate(events):
        message = to_hl7(event, token, f"{round_id}{i:06d}")
        assert message is not None
        frames.append(frame(message))
    return frames


def _hl7_sweep(
    port: int, events: Sequence[Event], token: str, headline: int, raw: float, say: Say
) -> list[Figure]:
    """HL7 messages/s over each connection count of HL7_SWEEP but the headline's, one round each."""
    figures = []
    for n in (c for c in HL7_SWEEP if c != headline):
        frames = _hl7_frames(events[:HL7_MESSAGES], token, f"S{n}{uuid.uuid4().hex[:6]}")
        value = asyncio.run(send_hl7(port, frames, n))
        say(f"  HL7 v2 over MLLP, {n} conn.: {value:,.0f} msg/s")
        name = f"gateway.hl7_messages_per_s.{n}_connections"
        figures.append(Figure(name, value, "messages/s", raw, BASELINE))
    return figures


def _best(rounds: int, run: Callable[[int], float], say: Say, what: str, unit: str) -> float:
    best = 0.0
    for r in range(rounds):
        value = run(r)
        say(f"  {what} round {r + 1}: {value:,.0f} {unit}")
        best = max(best, value)
    return best


def measure(
    events: int,
    *,
    single_seconds: float = 20.0,
    workers: int = 1,
    rounds: int = ROUNDS,
    hl7_connections: int = HL7_CONNECTIONS,
    say: Say = lambda _: None,
) -> list[Figure]:
    """Start or reuse the servers, start a gateway, warm up, measure every figure, stop it."""
    from events.topics import EVENT_TOPICS
    from gateway.testing import issue_token
    from infra.runtime import ensure_up

    say(f"load average before the run: {os.getloadavg()[0]:.2f} (1 min)")
    endpoints = ensure_up(report=say)
    consortium_id = "bench" + uuid.uuid4().hex[:8]
    throwaway_topics(endpoints.bootstrap_servers, consortium_id, EVENT_TOPICS.values())
    say(f"topics created for {consortium_id}; simulating a county …")
    load = county_hospital_load(events, consortium_id)
    token = issue_token(endpoints.database_url, load.institution)
    say(
        f"{len(load.events):,} events of {load.institution}, "
        f"{len(load.hl7_events):,} of them with an HL7 v2 mapping"
    )
    bootstrap = endpoints.bootstrap_servers
    # One producer for every round, created and warmed outside the clock: a new producer per
    # round timed its connection, metadata and producer-id acquisition, not produce.
    producer = warmed_producer(endpoints.bootstrap_servers, load.records)
    raw_produce_rate(producer, load.records[:2000])  # warm-up: buffers, batches per partition
    raw = _best(rounds, lambda _: raw_produce_rate(producer, load.records), say, BASELINE, "ev/s")
    raw_lat = raw_produce_latencies(producer, load.records[:500])
    producer.flush(30)
    raw_p50, raw_p99 = percentile(raw_lat, 50), percentile(raw_lat, 99)
    say(f"  {BASELINE} one at a time: p50 {raw_p50:.1f} ms, p99 {raw_p99:.1f} ms")

    def run(coro: Awaitable[Any]) -> Any:
        return asyncio.run(coro)  # type: ignore[arg-type]

    with gateway_process(
        consortium_id,
        bootstrap,
        endpoints.database_url,
        workers=workers,
        environment={"OTEL_TRACES_EXPORTER": "none"},
    ) as launched:
        base, mllp_port, pid = launched.url, launched.mllp_port, launched.process.pid
        say(f"gateway pid {pid} on {base}, MLLP {mllp_port}, {workers} worker(s)")
        cpu = CpuMeter(pid)
        port = int(base.rsplit(":", 1)[1])
        say("warming up …")
        run(post_batches(base, token, _json_bodies(load.events[:2000], BATCH), BATCH_CLIENTS))
        run(post_open_loop(port, token, _json_bodies(load.events[:500], 1), SINGLE_RATE))
        run(
            send_hl7(
                mllp_port,
                _hl7_frames(load.hl7_events[:300], token, "W" + uuid.uuid4().hex[:6]),
                hl7_connections,
            )
        )

        def batched(_: int) -> float:
            bodies = _json_bodies(load.events, BATCH)
            with cpu.measure("batched", say):
                return float(run(post_batches(base, token, bodies, BATCH_CLIENTS)))

        batched_rate = _best(rounds, batched, say, "batched", "ev/s")

        singles = int(SINGLE_RATE * single_seconds)
        pool = (load.events * (singles // len(load.events) + 1))[:singles]
        tries: list[tuple[float, float, float]] = []
        for r in range(rounds):
            bodies = _json_bodies(pool, 1)
            with cpu.measure("single", say):
                rps, lat = run(post_open_loop(port, token, bodies, SINGLE_RATE, say))
            tries.append((percentile(lat, 99), percentile(lat, 50), rps))
            say(
                f"  single round {r + 1}: {rps:,.0f} req/s, p50 {tries[-1][1]:.1f} ms, "
                f"p99 {tries[-1][0]:.1f} ms"
            )
        # The round least disturbed by other load on the machine: the lowest p99.
        single_p99, single_p50, single_rps = min(tries)

        def hl7(r: int) -> float:
            messages = load.hl7_events[:HL7_MESSAGES]
            frames = _hl7_frames(messages, token, f"R{r}{uuid.uuid4().hex[:6]}")
            with cpu.measure("hl7", say):
                return float(run(send_hl7(mllp_port, frames, hl7_connections)))

        hl7_rate = _best(rounds, hl7, say, f"HL7 v2 over MLLP, {hl7_connections} conn.", "msg/s")
        sweep = _hl7_sweep(mllp_port, load.hl7_events, token, hl7_connections, raw, say)

    return [
        Figure("gateway.batched_events_per_s", batched_rate, "events/s", raw, BASELINE),
        Figure("gateway.single_rps", single_rps, "requests/s", raw, BASELINE),
        Figure("gateway.single_p50_ms", single_p50, "ms", raw_p50, BASELINE),
        Figure("gateway.single_p99_ms", single_p99, "ms", raw_p99, BASELINE),
        Figure("gateway.hl7_messages_per_s", hl7_rate, "messages/s", raw, BASELINE),
        *sweep,
    ]
