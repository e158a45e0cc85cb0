"""`consortium demo`: a simulated county week through the backbone, and what a user then sees."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

import typer
from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

from consortium.kafka_config import kafka_client_config
from consortium.processes import log_ends, processors_running, wait_caught_up
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.membership import InstitutionLevel, Membership, load_membership
from events.topics import MEMBER_FAMILIES, Family, event_topic
from infra.runtime import Endpoints
from infra.security import ADMIN

Watermarks = dict[tuple[str, int], int]


@dataclass
class LogSummary:
    """What the event topics hold between two points: counts by institution, family and type."""

    by_source: dict[str, Counter[Family]] = field(default_factory=dict)
    by_type: Counter[str] = field(default_factory=Counter)
    referrals_by_direction: Counter[str] = field(default_factory=Counter)

    def add(self, event: Event) -> None:
        """Count one event read back from the log."""
        self.by_source.setdefault(event.envelope.source, Counter())[event.family] += 1
        self.by_type[event.event_type] += 1
        direction = getattr(event, "direction", None)
        if event.event_type == "ReferralRequested" and direction is not None:
            self.referrals_by_direction[str(direction)] += 1

    @property
    def total(self) -> int:
        """Events read."""
        return sum(self.by_type.values())


def read_back(bootstrap: str, start: Watermarks, end: Watermarks, codec: Codec) -> LogSummary:
    """Decode every event written between two sets of watermarks."""
    summary = LogSummary()
    wanted = {tp: off for tp, off in end.items() if off > start.get(tp, 0)}
    if not wanted:
        return summary
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            **kafka_client_config(ADMIN),
            "group.id": "consortium-demo",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(t, p, start.get((t, p), 0)) for t, p in wanted])
    try:
        while wanted:
            for message in consumer.consume(num_messages=2000, timeout=1.0):
                if message.error() is not None:
                    raise RuntimeError(f"reading back failed: {message.error()}")
                tp = (message.topic() or "", message.partition() or 0)
                offset = message.offset() or 0
                if tp not in wanted or offset >= wanted[tp]:
                    continue
                summary.add(codec.decode_event(message.value() or b""))
                if offset + 1 >= wanted[tp]:
                    del wanted[tp]
    finally:
        consumer.close()
    return summary


def institutions_table(summary: LogSummary, membership: Membership, limit: int = 20) -> Table:
    """Per-institution event counts, busiest first, by family."""
    table = Table(title=f"Events per institution (top {limit} of {len(summary.by_source)})")
    table.add_column("institution")
    table.add_column("level")
    families = [f for f in Family if f in MEMBER_FAMILIES]
    for family in families:
        table.add_column(family.value, justify="right")
    table.add_column("total", justify="right")
    ranked = sorted(summary.by_source.items(), key=lambda kv: -sum(kv[1].values()))
    for code, counts in ranked[:limit]:
        member = membership.get(code)
        name = f"{member.name} ({code})" if member else code
        level = member.level.value if member else "?"
        table.add_row(
            name,
            level,
            *(f"{counts[f]:,}" for f in families),
            f"{sum(counts.values()):,}",
        )
    return table


def types_table(summary: LogSummary) -> Table:
    """Events per type, as read back from the log."""
    table = Table(title="Events per type")
    table.add_column("event type")
    table.add_column("count", justify="right")
    for event_type, count in sorted(summary.by_type.items()):
        table.add_row(event_type, f"{count:,}")
    return table


def demo(
    days: Annotated[float, typer.Option(min=0.1, help="Simulated days.")] = 7.0,
    population: Annotated[int, typer.Option(min=100, help="Residents simulated.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Same seed, same county, same week.")] = 1,
    serve: Annotated[
        bool, typer.Option("--serve", help="Then run the gateway until Ctrl-C.")
    ] = False,
) -> None:
    """Set up, run a simulated county week through the backbone, and show what users see."""
    from consortium.settings import get_settings
    from consortium.topics import ensure_topics
    from infra.runtime import ensure_up, shut_down
    from simulator.county import SimulationConfig
    from simulator.runner import run_county
    from simulator.simulation import simulate
    from simulator.sinks import KafkaSink

    console = Console()
    if not console.is_terminal:
        console = Console(width=132)  # tables stay readable in logs and CI output
    settings = get_settings()
    console.rule("[bold]1. servers")
    endpoints = ensure_up(report=console.print)
    try:
        bootstrap = endpoints.bootstrap_servers
        created = ensure_topics(bootstrap, settings.consortium_id)
        console.print(
            f"topics: {sum(o.created for o in created)} created, "
            f"{sum(not o.created for o in created)} already there"
        )
        # What members published; the index's decisions and derived facts are the processors'.
        topics = [event_topic(f, settings.consortium_id) for f in sorted(MEMBER_FAMILIES)]
        before = log_ends(bootstrap, topics)

        console.rule(f"[bold]2. a simulated county: {days:g} days, {population:,} residents")
        membership = load_membership()
        county = simulate(SimulationConfig(seed=seed, days=days, population=population), membership)
        total, seconds = run_county(county, KafkaSink(bootstrap, settings.consortium_id))
        console.print(
            f"{total:,} events published in {seconds:.1f} s "
            f"({total / max(seconds, 1e-6):,.0f} events/s), every one acknowledged by Kafka"
        )

        console.rule("[bold]3. what the log now holds (read back and decoded)")
        summary = read_back(bootstrap, before, log_ends(bootstrap, topics), Codec(Catalog.load()))
        console.print(institutions_table(summary, membership))
        console.print(types_table(summary))
        directions = ", ".join(
            f"{k}: {v}" for k, v in sorted(summary.referrals_by_direction.items())
        )
        console.print(f"referrals requested by direction — {directions or 'none'}")
        status = "all" if summary.total == total else f"MISMATCH: {summary.total:,} of"
        console.print(f"read back {status} {total:,} published events")
        if summary.total != total:
            raise typer.Exit(1)

        console.rule("[bold]4. the projections (faust processors → PostgreSQL) and the gateway")
        with (
            processors_running(endpoints, settings.consortium_id) as child,
            gateway_running(endpoints, settings.consortium_id) as gateway,
        ):
            console.print(f"the gateway answers at {gateway.url}")
            wait_caught_up(endpoints, settings.consortium_id, child, report=_every(console, 5.0))
            console.print("every projection has applied the whole log")
            show_projections(console, endpoints.database_url, membership)
            show_transfers(console, endpoints.database_url, membership)
            show_record(console, endpoints.database_url, membership)
            show_bureau(console, gateway)
            if serve:
                serve_until_interrupted(console, endpoints, gateway, child)
    finally:
        console.rule("[bold]shutting down")
        shut_down(report=console.print, only=endpoints.started)


def _every(console: Console, seconds: float) -> Callable[[str], None]:
    """A reporter that prints at most one line per interval."""
    last = [0.0]

    def report(line: str) -> None:
        if time.monotonic() - last[0] >= seconds:
            console.print(line)
            last[0] = time.monotonic()

    return report


def show_projections(console: Console, database_url: str, membership: Membership) -> None:
    """What a referral desk sees: the consortium's referral board."""
    import psycopg

    from projections.referrals.queries import board_summary, list_referrals

    with psycopg.connect(database_url) as conn:
        board = board_summary(conn)
        county = membership.at_level(InstitutionLevel.COUNTY_HOSPITAL)[0]
        latest = list_referrals(conn, county.code, limit=8)
    table = Table(title="Referral board, consortium-wide")
    table.add_column("state")
    table.add_column("referrals", justify="right")
    for state, count in board["by_state"].items():
        table.add_row(state, f"{count:,}")
    console.print(table)
    directions = ", ".join(f"{k}: {v}" for k, v in board["by_direction"].items())
    console.print(f"by direction — {directions}; overdue: {board['overdue']}")
    desk = Table(title=f"The referral desk of {county.name}: latest referrals")
    for column in ("requested", "from", "to", "direction", "urgency", "state", "overdue"):
        desk.add_column(column)
    for r in latest:
        desk.add_row(
            f"{r['requested_at']:%m-%d %H:%M}" if r["requested_at"] else "",
            membership[r["from_institution"]].name,
            membership[r["to_institution"]].name,
            r["direction"],
            r["urgency"],
            r["state"],
            "yes" if r["overdue"] else "",
        )
    console.print(desk)


_TRANSFERS = """
SELECT count(*), count(*) FILTER (WHERE NOT referred) FROM transfers.transfers
"""
_LATEST_TRANSFERS = """
SELECT from_institution, to_institution, discharged_at, admitted_at, referred
FROM transfers.transfers ORDER BY admitted_at DESC, transfer_id LIMIT 8
"""


def show_transfers(console: Console, database_url: str, membership: Membership) -> None:
    """What a referral desk sees of patients who moved between members without (or with) a
    referral: the same person (by the patient index) discharged at one, admitted at another
    within 48 h. No person or patient id is shown."""
    import psycopg

    from projections.reporting.windows import REPORTING_ZONE

    with psycopg.connect(database_url) as conn:
        counted = conn.execute(_TRANSFERS).fetchone()
        latest = conn.execute(_LATEST_TRANSFERS).fetchall()
    total, unreferred = counted if counted else (0, 0)
    console.print(
        f"Transfers between members (one person by the index, within 48 h): {total:,}, "
        f"{unreferred:,} without a referral"
    )
    if not latest:
        return
    table = Table(title="Latest transfers (Asia/Shanghai time)")
    for column in ("discharged", "from", "admitted", "to", "referral"):
        table.add_column(column)
    for source, target, discharged, admitted, referred in latest:
        table.add_row(
            f"{discharged.astimezone(REPORTING_ZONE):%m-%d %H:%M}",
            membership[source].name if source in membership else source,
            f"{admitted.astimezone(REPORTING_ZONE):%m-%d %H:%M}",
            membership[target].name if target in membership else target,
            "yes" if referred else "none",
        )
    console.print(table)


_BUSIEST_PERSON = """
SELECT lp.person_id, count(DISTINCT lp.institution) AS members, count(*) AS entries
FROM record.local_patients lp
JOIN record.entries e ON e.institution = lp.institution AND e.local_id = lp.local_id
WHERE lp.person_id IS NOT NULL
GROUP BY lp.person_id
ORDER BY members DESC, entries DESC, lp.person_id
LIMIT 1
"""


def show_record(console: Console, database_url: str, membership: Membership) -> None:
    """What a clinician sees: one person's record across the members that know them."""
    import psycopg

    from projections.record import queries
    from projections.reporting.windows import REPORTING_ZONE

    with psycopg.connect(database_url) as conn:
        found = conn.execute(_BUSIEST_PERSON).fetchone()
        if found is None:
            console.print("no person is linked at any member yet (is the patient index running?)")
            return
        person_id = str(found[0])
        who = queries.person(conn, person_id)
        page = queries.timeline(conn, person_id, limit=12)
    members = ", ".join(f"{membership[i].name} ({local})" for i, local in who.local_patients)
    console.print(
        f"The shared record of person {person_id}: known at {found[1]} members — {members}; "
        f"{found[2]:,} entries, the latest {len(page.entries)}:"
    )
    table = Table(title="Shared record (newest first, Asia/Shanghai time)")
    for column in ("when", "member", "kind", "what", "status"):
        table.add_column(column)
    for e in page.entries:
        table.add_row(
            f"{e.at.astimezone(REPORTING_ZONE):%m-%d %H:%M}",
            membership[e.institution].name if e.institution in membership else e.institution,
            e.kind,
            e.display or e.code or e.event_type,
            e.status or "",
        )
    console.print(table)


def _shown(figure: dict[str, object] | None, kind: str = "count") -> str:
    if figure is None:
        return ""
    if figure["suppressed"]:
        return "<5"
    value = figure["value"]
    if value is None:
        return "–"
    return f"{value:.0%}" if kind == "share" else f"{value:,}"


def show_bureau(console: Console, gateway: Gateway) -> None:
    """What a county health bureau sees, read as a bureau analyst through the gateway's
    /v1/reports/consortium: the consortium's headline figures per day."""
    import httpx

    answer = httpx.get(
        f"{gateway.url}/v1/reports/consortium",
        params={"grain": "DAY"},
        headers={"Authorization": f"Bearer {gateway.analyst_token}"},
        timeout=30,
    )
    answer.raise_for_status()
    days = answer.json()["records"]
    table = Table(title="The bureau's headline figures (consortium, per day; <5 = suppressed)")
    columns = [
        ("admissions", "admissions", "count"),
        ("discharges", "discharges", "count"),
        ("outpatient_visits", "visits", "count"),
        ("referrals_up", "referred up", "count"),
        ("referrals_down", "referred down", "count"),
        ("share_referrals_down", "share down", "share"),
        ("share_visits_primary", "visits at township/village", "share"),
        ("admitted_within_county", "admitted in county", "share"),
        ("bed_occupancy", "bed occupancy", "share"),
    ]
    table.add_column("day")
    for _, label, _ in columns:
        table.add_column(label, justify="right")
    for record in days:
        table.add_row(
            str(record["local_date"]),
            *(_shown(record.get(field), kind) for field, _, kind in columns),
        )
    console.print(table)


@dataclass(frozen=True)
class Gateway:
    """The gateway the demo runs: its process, address and a bureau analyst's credential."""

    process: subprocess.Popen[bytes]
    url: str
    analyst_token: str


@contextmanager
def gateway_running(endpoints: Endpoints, consortium_id: str) -> Iterator[Gateway]:
    """The gateway (gateway.launch), answering before this yields, with a bureau analyst's token."""
    from gateway.launch import gateway_process
    from gateway.principals import Role
    from gateway.testing import issue_token

    with gateway_process(
        consortium_id, endpoints.bootstrap_servers, endpoints.database_url
    ) as launched:
        county = load_membership().at_level(InstitutionLevel.COUNTY_HOSPITAL)[0].code
        token = issue_token(endpoints.database_url, county, Role.BUREAU_ANALYST)
        yield Gateway(launched.process, launched.url, token)


def serve_until_interrupted(
    console: Console,
    endpoints: Endpoints,
    gateway: Gateway,
    processors: subprocess.Popen[bytes],
) -> None:
    """Keep the gateway and the processors running until Ctrl-C."""
    console.rule("[bold]serving")
    console.print(f"gateway:  {gateway.url}/docs  (OpenAPI at /openapi.json)")
    console.print(f"catalog:  {gateway.url}/subjects  (Schema Registry paths)")
    console.print(
        f"dashboard: {gateway.url}/dashboard  (a bureau analyst's token: {gateway.analyst_token})"
    )
    console.print(endpoints.export_lines(), end="")
    console.print("Ctrl-C stops the gateway, the processors and the servers it started.")
    try:
        while gateway.process.poll() is None and processors.poll() is None:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
