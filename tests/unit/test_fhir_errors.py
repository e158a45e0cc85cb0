"""Every answer of the FHIR router's routes is an OperationOutcome, a crash's included."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from gateway.problems import install as install_problem_handlers
from gateway.routers.fhir import FhirRoute


def test_an_unexpected_error_is_a_500_operation_outcome_that_echoes_nothing() -> None:
    router = APIRouter(prefix="/fhir", route_class=FhirRoute)

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("患者 110101199003071234 张三")  # may hold request data

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    response = TestClient(app, raise_server_exceptions=False).get("/fhir/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [(i["severity"], i["code"]) for i in outcome["issue"]] == [("fatal", "exception")]
    assert "张三" not in response.text and "1101011990" not in response.text
