"""Every bureau report route refuses all but a bureau analyst (docs/reporting.md), found from
the router itself, so a route added later without the check fails here."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from gateway.principals import Principal, Role
from gateway.problems import ProblemError
from gateway.routers import reports


def _calls(dependant: Dependant) -> set[object]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def test_every_report_route_depends_on_the_bureau_analyst_check() -> None:
    routes = [r for r in reports.router.routes if isinstance(r, APIRoute)]
    paths = {r.path for r in routes}
    assert {
        "/v1/reports/members",
        "/v1/reports/consortium",
        "/v1/reports/levels",
        "/v1/reports/institutions",
        "/v1/reports/ratios",
        "/v1/reports/overdue",
        "/v1/reports/referral-flow",
        "/v1/reports/repeat-tests",
        "/v1/reports/transfers",
        "/v1/reports/stream",
    } <= paths
    unchecked = sorted(r.path for r in routes if reports.bureau_analyst not in _calls(r.dependant))
    assert unchecked == []


def test_only_the_bureau_analyst_role_passes_the_check() -> None:
    for role in Role:
        principal = Principal(uuid.uuid4(), "439901-C01", role)
        if role is Role.BUREAU_ANALYST:
            assert asyncio.run(reports.bureau_analyst(principal)) is principal
            continue
        with pytest.raises(ProblemError) as refused:
            asyncio.run(reports.bureau_analyst(principal))
        assert refused.value.status == 403, role
