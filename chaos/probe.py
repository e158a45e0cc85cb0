"""With two of three brokers down the gateway must refuse (503); once they return, accept."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Mapping

import httpx

from chaos.faults import busiest
from chaos.ledger import GATEWAY, Ledger
from chaos.stage import Stage
from chaos.summary import TwoDown
from events.envelope import Event

BACK_WITHIN_S = 180.0


async def _post_all(
    url: str, tokens: Mapping[str, str], events: list[Event]
) -> list[httpx.Response]:
    """POST each event on its own, all at once (they go to different partitions)."""
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        "/v1/events",
                        content=e.model_dump_json().encode(),
                        headers={
                            "Authorization": f"Bearer {tokens[e.envelope.source]}",
                            "Content-Type": "application/json",
                        },
                    )
                    for e in events
                )
            )
        )


def two_brokers_down(
    stage: Stage,
    tokens: Mapping[str, str],
    events: list[Event],
    ledger: Ledger,
    say: Callable[[str], None],
) -> TwoDown:
    """SIGKILL two nodes (keeping the busiest partition's leader), publish, restart, publish."""
    cluster = stage.cluster
    topic, partition = busiest(cluster.bootstrap, stage.consortium_id)
    keep = cluster.wait_for_leader(topic, partition)
    victims = sorted(set(cluster.nodes) - {keep})
    for node_id in victims:
        cluster.kill(node_id, signal.SIGKILL)
    say(f"  nodes {victims} killed; publishing {len(events)} events through the gateway")
    outcome = TwoDown()
    try:
        answers = asyncio.run(_post_all(stage.gateway_url, tokens, events))
        outcome.statuses_down = [r.status_code for r in answers]
        outcome.stored_down = sum(
            len(r.json().get("stored") or []) for r in answers if r.status_code == 503
        )
        ledger.acked(
            GATEWAY,
            [e.envelope.event_id for e, r in zip(events, answers, strict=True) if r.is_success],
        )
    finally:
        stage.launch(
            cluster.start
        )  # both at once: either alone cannot form a quorum to be ready in
    restarted = time.monotonic()
    say(f"  answers while down: {outcome.statuses_down}; nodes back, publishing again")
    deadline = restarted + BACK_WITHIN_S
    while time.monotonic() < deadline:
        answers = asyncio.run(_post_all(stage.gateway_url, tokens, events))
        done = [
            e.envelope.event_id
            for e, r in zip(events, answers, strict=True)
            if r.status_code == 202
        ]
        ledger.acked(GATEWAY, done)
        if len(done) == len(events):
            outcome.status_back = 202
            break
        outcome.status_back = next(r.status_code for r in answers if r.status_code != 202)
        time.sleep(1.0)
    outcome.back_after_s = time.monotonic() - restarted
    return outcome
