"""The bureau dashboard in headless Chromium against a running stack: log in, read, watch it move.

Kafka and PostgreSQL are the session's servers; events go to Kafka through the publisher, a
feeder thread reads them like the reporting processor (BatchProcessor, then the outbox relay),
and the gateway serves the page, the reports and the stream.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi import FastAPI
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from bench.fhir import load_projection
from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.encounter import OutpatientVisitStarted
from events.envelope import Event
from events.membership import InstitutionLevel, load_membership
from events.publisher import Publisher
from events.topics import event_topic
from examples import COUNTY_HOSPITAL, TOWNSHIP, VILLAGE
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.routers import dashboard, reports
from gateway.testing import issue_token, serving
from infra.browser import ensure_chromium, headless_arguments
from infra.migrate import apply_migrations
from own_databases import own_database
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.records import DeadLetter, Record
from projections.record.projection import RECORD
from projections.reporting import queries
from projections.reporting.projection import reporting_projection
from projections.reporting.relay import Relay
from projections.reporting.synthetic import flows
from projections.reporting.windows import day_start, local_date
from projections.transfers import derived
from projections.transfers.projection import TRANSFERS
from projections.transfers.relay import TransferRelay
from projections.transfers.synthetic import transfer_flows

CODEC = Codec(Catalog.load())
WAIT_S = 90


class NoDeadLetters:
    """These events are all valid."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        assert not letters, letters


class Feeder:
    """The reporting processor's work in a thread: topics → BatchProcessor → outbox relay."""

    def __init__(self, bootstrap: str, database_url: str, consortium_id: str) -> None:
        projection = reporting_projection(consortium_id)
        with psycopg.connect(database_url) as conn:
            generations.ensure_live(conn, projection)
        self.processor = BatchProcessor(projection, database_url, CODEC, NoDeadLetters())
        self.relay = Relay(database_url, bootstrap, consortium_id)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": uuid.uuid4().hex,
                "enable.auto.commit": False,
            }
        )
        topics = [event_topic(f, consortium_id) for f in projection.families]
        parts = []
        for topic in topics:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [TopicPartition(topic, p, 0) for p in meta.partitions]
        self.consumer.assign(parts)
        self.read = 0
        self.idle = threading.Event()  # set while everything read is projected and relayed
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                messages = [m for m in self.consumer.consume(500, timeout=0.2) if not m.error()]
                if messages:
                    self.idle.clear()
                    self.processor.process(
                        [
                            Record(m.topic(), m.partition(), m.offset(), m.key(), m.value())  # type: ignore[arg-type]
                            for m in messages
                        ]
                    )
                    self.read += len(messages)
                if not self.relay.drain() and not messages:
                    self.idle.set()
        finally:
            self.consumer.close()
            self.processor.close()

    def wait_for(self, count: int) -> None:
        """Until `count` events were read and their changes are on the reporting topics."""
        for _ in range(WAIT_S * 10):
            if self.read >= count and self.idle.wait(0.1) and self.read >= count:
                return
            self.stop.wait(0.1)
        raise AssertionError(f"the feeder read {self.read} of {count} events")


@dataclass
class Stack:
    """A served gateway over a fed reporting projection."""

    url: str
    database_url: str
    consortium_id: str
    bootstrap: str
    events: list[Event]
    feeder: Feeder
    analyst: str
    publisher: str
    published: int = 0

    def publish(self, events: list[Event]) -> None:
        """Publish to Kafka and wait until the processor and the relay are through them."""
        with Publisher(self.bootstrap, self.consortium_id) as publisher:
            publisher.publish(events, timeout=60)
        self.published += len(events)
        self.feeder.wait_for(self.published)

    def consortium_day(self, day: str) -> dict[str, Any]:
        with psycopg.connect(self.database_url) as conn:
            [record] = queries.run(conn, queries.day_query("consortium", date.fromisoformat(day)))
        return record


def reports_app(config: GatewayConfig) -> FastAPI:
    """The gateway app with the reports and dashboard routers (until app.py includes them)."""
    app = create_app(config)
    paths = {getattr(r, "path", "") for r in app.routes}
    if "/v1/reports/members" not in paths:
        app.include_router(reports.router)
    if "/dashboard" not in paths:
        app.include_router(dashboard.router)
    return app


@pytest.fixture
def scratch_database_url(database_url: str) -> Iterator[str]:
    """A new database of its own: the reporting views name one live generation per database."""
    with own_database(database_url) as url:
        yield url


@pytest.fixture
def stack(
    kafka_bootstrap: str, scratch_database_url: str, fresh_consortium_id: str
) -> Iterator[Stack]:
    cid, url = fresh_consortium_id, scratch_database_url
    apply_migrations(url)
    ensure_topics(kafka_bootstrap, cid)
    feeder = Feeder(kafka_bootstrap, url, cid)
    try:
        with serving(reports_app(GatewayConfig(cid, kafka_bootstrap, url))) as base:
            stack = Stack(
                base,
                url,
                cid,
                kafka_bootstrap,
                [e for f in flows(37, 160) for e in f],
                feeder,
                issue_token(url, COUNTY_HOSPITAL, Role.BUREAU_ANALYST),
                issue_token(url, TOWNSHIP),
            )
            stack.publish(stack.events)
            # Transfers between members over the same weeks: the transfers projection, and its
            # relay to the derived topic, which the reporting processor reads.
            load_projection(TRANSFERS, url, [e for f in transfer_flows(11, 800) for e in f], cid)
            stack.published += TransferRelay(url, kafka_bootstrap, cid).drain()
            feeder.wait_for(stack.published)
            load_projection(RECORD, url, [], cid)  # built and empty: no repeat tests
            yield stack
    finally:
        feeder.stop.set()
        feeder.thread.join(30)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium.browser)
    for argument in headless_arguments(tmp_path / "profile"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(chromium.driver)), options=options)
    try:
        yield driver
    finally:
        driver.quit()  # before the gateway stops: the page's stream must be closed first


def late_visits(events: list[Event], day: str, n: int = 5) -> list[Event]:
    """n more outpatient visits on a day that already has visits."""
    visit = next(
        e
        for e in events
        if isinstance(e, OutpatientVisitStarted) and str(local_date(e.envelope.occurred_at)) == day
    )
    rng = random.Random(day)
    return [
        visit.model_copy(
            update={
                "envelope": visit.envelope.model_copy(
                    update={
                        "event_id": uuid.uuid4(),
                        "patient_local_id": f"L{rng.randrange(10**8)}",
                    }
                ),
                "encounter_id": f"late-{uuid.uuid4().hex[:8]}",
            }
        )
        for _ in range(n)
    ]


def shown(record: dict[str, Any], measure: str) -> str:
    """How the page shows a count: its value, or <5 when suppressed."""
    cell = record[measure]
    return "<5" if cell["suppressed"] else str(cell["value"])


def point(cell: dict[str, Any]) -> Any:
    return None if cell["suppressed"] else cell["value"]


def tile(driver: WebDriver, measure: str) -> str:
    """The text of a figure's tile (read by a script: a render replaces the tiles)."""
    text: str = driver.execute_script(
        "const t = document.querySelector(arguments[0]); return t ? t.textContent : null",
        f"#kpi-{measure} .value",
    )
    return text


def log_in(driver: WebDriver, url: str, token: str) -> None:
    driver.get(f"{url}/dashboard")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "login-button").click()


def test_an_analyst_sees_the_figures_and_a_new_event_moves_a_number(
    stack: Stack, browser: WebDriver
) -> None:
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.2)

    # A publisher's credential is refused by the reports, and the page says so.
    log_in(browser, stack.url, stack.publisher)
    wait.until(lambda d: "not a bureau analyst" in d.find_element(By.ID, "login-error").text)
    assert not browser.find_element(By.ID, "board").is_displayed()

    log_in(browser, stack.url, stack.analyst)
    wait.until(lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")
    wait.until(
        lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-records") or 0)
    )

    with psycopg.connect(stack.database_url) as conn:
        daily = queries.consortium_figures(conn, "DAY")[-31:]  # the page charts the last 31 days
        levels = queries.run(conn, queries.figures_query("levels"))
    published = [r for r in daily if not r["outpatient_visits"]["suppressed"]]
    day = str(max(published, key=lambda r: r["outpatient_visits"]["value"])["local_date"])
    Select(browser.find_element(By.ID, "day")).select_by_value(day)
    before = stack.consortium_day(day)
    for measure in ("admissions", "outpatient_visits", "referrals_up", "referrals_down"):
        expected = shown(before, measure)
        wait.until(lambda d: tile(d, measure) == expected)  # noqa: B023 - waited on right here

    # The time series hold the day records' values, suppressed ones as gaps (null).
    series = browser.execute_script(
        "return Chart.getChart(document.getElementById('chart-encounters')).data"
    )
    assert series["labels"] == [r["local_date"] for r in daily]
    assert series["datasets"][2]["data"] == [point(r["outpatient_visits"]) for r in daily]
    # Every figure of a day record is charted per day, not only shown as a tile.
    for canvas, measures in (
        ("chart-flows", ("inpatients", "referrals_overdue", "referrals_completed")),
        ("chart-rates", ("bed_occupancy", "acceptance_rate")),
        ("chart-times", ("average_length_of_stay_days", "acceptance_minutes_median")),
        (
            "chart-repeats",
            (
                "repeat_checks_flagged_reused",
                "repeat_checks_flagged_not_reused",
                "repeat_checks_not_flagged",
            ),
        ),
    ):
        charted = browser.execute_script(
            f"return Chart.getChart(document.getElementById('{canvas}')).data.datasets"
        )
        for dataset, measure in zip(charted, measures, strict=False):
            assert dataset["data"] == [point(r[measure]) for r in daily], (canvas, measure)
    flow = browser.execute_script(
        "return Chart.getChart(document.getElementById('chart-flow')).data.datasets"
    )
    of_day = {r["scope"]: r for r in levels if r["local_date"] == day}
    for dataset, measure in zip(flow, ("referrals_up", "referrals_down"), strict=False):
        points = [
            point(of_day[lv][measure]) if lv in of_day else 0
            for lv in (
                "county_hospital",
                "specialist_hospital",
                "township_centre",
                "village_clinic",
            )
        ]
        assert dataset["data"] == points, (measure, dataset)
    # The from-level x to-level matrix: a dataset per destination level, a bar per sender.
    matrix = browser.execute_script(
        "return Chart.getChart(document.getElementById('chart-matrix')).data.datasets"
    )
    senders = ("county_hospital", "specialist_hospital", "township_centre", "village_clinic")
    assert len(matrix) == len(senders)
    for dataset, to in zip(matrix, senders, strict=True):
        cells = [point(of_day[lv][f"referrals_to_{to}"]) if lv in of_day else 0 for lv in senders]
        assert dataset["data"] == cells, (to, dataset)
    # (The chosen day's level cells may all be hidden; some day's are published.)
    assert any(point(r[f"referrals_to_{to}"]) for r in levels for to in senders)

    # Members by level: the membership's counts (read in one script: renders replace rows).
    members = load_membership()
    counts = browser.execute_script(
        "return [...document.querySelectorAll('#levels-table tbody tr')]"
        ".map((tr) => [tr.dataset.level, tr.querySelector('td.members').textContent])"
    )
    assert {level: int(n) for level, n in counts} == {
        lv.value: len(members.at_level(lv)) for lv in InstitutionLevel
    }

    # Five more visits on that day: the page's number moves by five, from the stream alone.
    stack.publish(late_visits(stack.events, day))
    after = stack.consortium_day(day)
    assert after["outpatient_visits"]["value"] == before["outpatient_visits"]["value"] + 5
    wait.until(lambda d: tile(d, "outpatient_visits") == shown(after, "outpatient_visits"))
    # Transfers between members, from the derived topic through reporting: per day as a time
    # series, the day's tiles, and each member's row; the shared record is empty, repeats 0.
    with psycopg.connect(stack.database_url) as conn:
        daily = queries.consortium_figures(conn, "DAY")[-31:]  # the page charts the last 31 days
    charted = browser.execute_script(
        "return Chart.getChart(document.getElementById('chart-transfers')).data.datasets"
    )
    for dataset, measure in zip(
        charted, ("transfers_received_unreferred", "transfers_received_referred"), strict=True
    ):
        assert dataset["data"] == [point(r[measure]) for r in daily], measure
    assert any(point(r["transfers_received_unreferred"]) for r in daily)
    moved_day = str(
        max(daily, key=lambda r: point(r["transfers_received_unreferred"]) or 0)["local_date"]
    )
    Select(browser.find_element(By.ID, "day")).select_by_value(moved_day)
    moved = stack.consortium_day(moved_day)
    for measure in ("transfers_received_referred", "transfers_received_unreferred"):
        expected = shown(moved, measure)
        wait.until(lambda d: tile(d, measure) == expected)  # noqa: B023
    wait.until(lambda d: tile(d, "repeats-flagged_not_reused") == "0")
    with psycopg.connect(stack.database_url) as conn:
        members = queries.run(
            conn, queries.day_query("institutions", date.fromisoformat(moved_day))
        )
    report = queries.transfers_of_day([moved], members)
    columns = tuple(queries.TRANSFER_FIELDS)
    expected_rows = {
        i["institution"]: [shown(i, m) for m in columns] for i in report["institutions"]
    }
    assert expected_rows, "the day has transfers"

    def rows(driver: WebDriver) -> Any:
        return driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#transfers-table tbody tr')]"
            ".map((tr) => [tr.dataset.institution, [...tr.children].slice(2, 6)"
            ".map((td) => td.textContent)]))"
        )

    wait.until(lambda d: rows(d) == expected_rows)

    # Five more unreferred transfers that day, as the transfers projection would derive them:
    # the page's tile moves from the stream alone.
    admitted = day_start(date.fromisoformat(moved_day)) + timedelta(hours=10)
    more = [
        derived.revision(
            derived.Published(uuid.uuid4(), VILLAGE, COUNTY_HOSPITAL, admitted, False),
            True,
            99,
            n,
            admitted,
        )
        for n in range(5)
    ]
    stack.publish(list(more))
    after = stack.consortium_day(moved_day)
    unreferred = "transfers_received_unreferred"
    if not (after[unreferred]["suppressed"] or moved[unreferred]["suppressed"]):
        assert after[unreferred]["value"] == moved[unreferred]["value"] + 5
    assert after != moved
    wait.until(lambda d: tile(d, unreferred) == shown(after, unreferred))
    wait.until(
        lambda d: (
            tile(d, "transfers_received_referred") == shown(after, "transfers_received_referred")
        )
    )

    if screenshot := os.environ.get("DASHBOARD_SCREENSHOT"):  # a picture for a reviewer
        browser.set_window_size(1400, 2600)
        browser.save_screenshot(screenshot)

    errors = [
        e
        for e in browser.get_log("browser")  # type: ignore[attr-defined]
        if e["level"] == "SEVERE" and "401" not in e["message"] and "403" not in e["message"]
    ]
    assert not errors, errors
