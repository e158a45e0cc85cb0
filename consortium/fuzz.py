"""`consortium fuzz codec|hl7`: mutated inputs against the decoders; only typed errors may come out.

Each input is a valid seed (a simulated event's Avro frame, or its HL7 v2 message) bent by one to
four mutations. An input passes when the decoder returns or raises one of its typed errors, within
a second; a worker passes when its peak resident memory stays under the limit. Anything else is a
finding, written out with the bytes that caused it.
"""

from __future__ import annotations

import multiprocessing
import random
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import typer

CHUNK = 2_000
SLOW_S = 1.0
MEMORY_LIMIT_MIB = 256
INTERESTING = [b"\x00", b"\xff", b"\x80", b"\x7f", b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n"]
Outcome = str  # "decoded", or the name of the typed error


@dataclass
class Tally:
    """What one chunk (or the whole run) did."""

    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0
    peak_rss_mib: float = 0.0
    findings: list[tuple[str, bytes]] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.inputs += other.inputs
        self.outcomes.update(other.outcomes)
        self.slowest_s = max(self.slowest_s, other.slowest_s)
        self.peak_rss_mib = max(self.peak_rss_mib, other.peak_rss_mib)
        self.findings.extend(other.findings[: max(0, 20 - len(self.findings))])


@lru_cache(maxsize=1)
def _seed_events() -> list[Any]:
    from simulator.county import SimulationConfig
    from simulator.simulation import simulate

    county = simulate(SimulationConfig(seed=3, days=1.0, population=800))
    return list(county.events())


@lru_cache(maxsize=2)
def seeds(target: str) -> list[bytes]:
    """Valid inputs of every kind the target takes."""
    events = _seed_events()
    if target == "codec":
        codec = _codec()
        by_type: dict[str, list[bytes]] = {}
        for event in events:
            by_type.setdefault(event.event_type, []).append(codec.encode_event(event))
        return [frame for frames in by_type.values() for frame in frames[:20]]
    from simulator.gateway_sink import to_hl7

    messages = (to_hl7(e, "fuzz", f"C{i}") for i, e in enumerate(events))
    return [m.encode() for m in messages if m is not None][:600]


@lru_cache(maxsize=1)
def _codec() -> Any:
    from events.catalog import Catalog
    from events.codec import Codec

    return Codec(Catalog.load(), strict=False)  # the processors' decoding


def codec_case(data: bytes) -> Outcome:
    """Decode one frame into a validated event."""
    from events.codec import DecodeError

    try:
        _codec().decode_event(data)
    except DecodeError:
        return "DecodeError"
    return "decoded"


def hl7_case(data: bytes) -> Outcome:
    """Parse, map and validate one message as the gateway does before publishing."""
    from events.membership import load_membership
    from gateway.hl7.er7 import ParseError
    from gateway.hl7.mapping import UnsupportedMessage, map_message
    from gateway.hl7.service import _parse, decode
    from gateway.hl7.values import Hl7ValueError
    from gateway.parsing import parse_one, request_checks

    try:
        message = _parse(decode(data))
    except ParseError:
        return "ParseError"  # the gateway answers AR 102
    try:
        drafts = map_message(message, load_membership())
    except UnsupportedMessage:
        return "UnsupportedMessage"
    except Hl7ValueError:
        return "Hl7ValueError"
    checks = request_checks()
    problems = [p for i, d in enumerate(drafts) for p in parse_one(d, (i,), checks)[1]]
    return "invalid-event" if problems else "decoded"


CASES: dict[str, Callable[[bytes], Outcome]] = {"codec": codec_case, "hl7": hl7_case}


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to four byte-level mutations of a seed."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op == 3:
            del out[at : at + rng.randint(1, 32)]
        elif op == 4:
            out[at:at] = out[at : at + rng.randint(1, 64)] * rng.randint(1, 8)
        elif op == 5:
            del out[at:]
        elif op == 6:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            out = out[:at] + bytearray(other[cut:])
        else:
            out[at:at] = rng.choice(INTERESTING) * rng.randint(1, 4)
    return bytes(out)


def _status_mib(name: str) -> float:
    """A VmXXX line of /proc/self/status in MiB (this process since its exec, not its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cap_memory(extra_mib: int = MEMORY_LIMIT_MIB) -> None:
    """Let this process grow by at most `extra_mib` of address space from now on.

    An input that needs more meets MemoryError, which is not a decoder's typed error: a finding.
    (ru_maxrss cannot say this: Linux carries the parent's peak across fork and exec.)"""
    limit = int((_status_mib("VmSize") + extra_mib) * 1024 * 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


_capped = False


def run_chunk(job: tuple[str, int, int]) -> Tally:
    """`count` mutated inputs from the chunk's own seed (reproducible by chunk number)."""
    global _capped  # noqa: PLW0603 - the cap is set once per worker process
    target, number, count = job
    case, pool = CASES[target], seeds(target)
    rng = random.Random(f"{target}:{number}")
    tally = Tally()
    case(pool[0])  # warm up: the first call imports and loads (catalog, membership), not timed
    if multiprocessing.parent_process() is not None and not _capped:
        cap_memory()
        _capped = True
    for _ in range(count):
        data = mutate(rng, rng.choice(pool), pool)
        started = time.perf_counter()
        try:
            outcome = case(data)
        except MemoryError:
            tally.findings.append((f"needed more than {MEMORY_LIMIT_MIB} MiB", data))
            outcome = "UNTYPED:MemoryError"
        except Exception as exc:  # the finding: an error that is not the decoder's typed one
            tally.findings.append((f"{type(exc).__name__}: {exc}"[:300], data))
            outcome = f"UNTYPED:{type(exc).__name__}"
        took = time.perf_counter() - started
        if took > SLOW_S:
            tally.findings.append((f"took {took:.2f} s", data))
        tally.slowest_s = max(tally.slowest_s, took)
        tally.outcomes[outcome] += 1
        tally.inputs += 1
    tally.peak_rss_mib = _status_mib("VmHWM")
    return tally


def jobs(target: str, inputs: int) -> Iterator[tuple[str, int, int]]:
    """The run cut into chunks."""
    for number, start in enumerate(range(0, inputs, CHUNK)):
        yield target, number, min(CHUNK, inputs - start)


def fuzz(target: str, inputs: int, workers: int = 2, say: Callable[[str], None] = print) -> Tally:
    """Run `inputs` mutated inputs against the target in worker processes."""
    total = Tally()
    started = time.monotonic()
    last = started
    context = multiprocessing.get_context("spawn")  # workers measure their own memory only
    with context.Pool(workers, maxtasksperchild=50) as pool:
        for tally in pool.imap_unordered(run_chunk, jobs(target, inputs)):
            total.add(tally)
            now = time.monotonic()
            if now - last >= 10 or total.inputs == inputs:
                rate = total.inputs / (now - started)
                say(
                    f"{target}: {total.inputs:,}/{inputs:,} inputs, {rate:,.0f}/s,"
                    f" {len(total.findings)} findings"
                )
                last = now
    return total


def failed(tally: Tally) -> list[str]:
    """Why a run fails, if it does."""
    return [why for why, _ in tally.findings]


def fuzz_command(
    target: Annotated[str, typer.Argument(help="`codec` (Avro frames) or `hl7` (HL7 v2 ER7).")],
    inputs: Annotated[int, typer.Option(min=1, help="Mutated inputs to run.")] = 1_000_000,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes.")] = 2,
    findings: Annotated[
        Path, typer.Option(help="Folder for the inputs that failed (one file each).")
    ] = Path(".state/fuzz"),
) -> None:
    """Mutated inputs against a decoder: only its typed errors, under 1 s and 256 MiB each."""
    if target not in CASES:
        raise typer.BadParameter(f"unknown target {target!r}; known: {', '.join(CASES)}")
    tally = fuzz(target, inputs, workers, say=lambda m: typer.echo(m, err=True))
    for outcome, count in tally.outcomes.most_common():
        typer.echo(f"{outcome:40} {count:>10,}")
    typer.echo(
        f"slowest input {tally.slowest_s * 1000:.1f} ms; peak worker memory"
        f" {tally.peak_rss_mib:.0f} MiB"
    )
    reasons = failed(tally)
    if reasons:
        findings.mkdir(parents=True, exist_ok=True)
        for n, (why, data) in enumerate(tally.findings):
            (findings / f"{target}-{n}.bin").write_bytes(data)
            typer.echo(f"finding {n}: {why}", err=True)
        typer.echo(f"{len(reasons)} findings; inputs in {findings}/", err=True)
        raise typer.Exit(1)
    typer.echo(f"{tally.inputs:,} inputs: only typed errors")
