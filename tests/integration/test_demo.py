"""The main job end to end: `consortium demo` on a small county against the session's servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consortium.cli", "demo", "--days", "2", "--population", "3000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_demo_shows_the_log_the_board_a_record_and_the_figures_and_runs_the_same_twice(
    kafka_bootstrap: str, scratch_database_url: str, fresh_consortium_id: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": scratch_database_url,
        "CONSORTIUM_ID": fresh_consortium_id,
        "STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "160",
    }
    first = run_demo(env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "read back all" in first.stdout
    assert "Referral board" in first.stdout
    assert "every projection has applied the whole log" in first.stdout
    assert "the gateway answers at http://127.0.0.1:" in first.stdout
    # A clinician's view: one person's record joined across members by the patient index.
    assert "The shared record of person" in first.stdout
    assert "known at 1 members" not in first.stdout
    # The bureau's view: the consortium's figures per day, read through the gateway.
    assert "The bureau's headline figures" in first.stdout
    with psycopg.connect(scratch_database_url) as conn:
        referrals = conn.execute("SELECT count(*) FROM referrals.referrals").fetchone()
    assert referrals is not None and referrals[0] > 0
    # A referral desk's view of moves between members: as many as the projection holds.
    with psycopg.connect(scratch_database_url) as conn:
        transfers = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT referred) FROM transfers.transfers"
        ).fetchone()
    assert transfers is not None
    assert f"within 48 h): {transfers[0]:,}, {transfers[1]:,} without a referral" in first.stdout

    second = run_demo(env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # The same seed publishes the same events again; projections dedupe them by event id.
    with psycopg.connect(scratch_database_url) as conn:
        again = conn.execute("SELECT count(*) FROM referrals.referrals").fetchone()
    assert again == referrals
    board = lambda out: out[out.index("Referral board") :]  # noqa: E731
    assert board(first.stdout) == board(second.stdout)
