"""RFC 9457 problem details: every error answer of the gateway, with the path of each bad field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://consortium-backbone.example/problems/"


class FieldError(BaseModel):
    """One invalid field: where it is (JSON Pointer and JSONPath) and what is wrong."""

    pointer: str = Field(
        description="RFC 6901 JSON Pointer into the request body, e.g. /0/envelope/source."
    )
    path: str = Field(description="The same place as a JSONPath, e.g. $[0].envelope.source.")
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem details object (application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raised by handlers: answered as problem+json with the given status and extensions."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.headers = dict(headers or {})
        self.extensions = extensions


def pointer(loc: Sequence[int | str]) -> str:
    """RFC 6901 JSON Pointer of a location ('~' and '/' escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def jsonpath(loc: Sequence[int | str]) -> str:
    """JSONPath of a location: $.a[0].b, with bracket notation for unusual names."""
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + repr(part) + "]"
    return out


def field_errors(
    errors: Iterable[Mapping[str, Any]], prefix: Sequence[int | str] = ()
) -> list[FieldError]:
    """Field errors from pydantic's error dicts, located under prefix."""
    found: list[FieldError] = []
    for err in errors:
        loc = [*prefix, *(p for p in err.get("loc", ()) if isinstance(p, int | str))]
        found.append(FieldError(pointer=pointer(loc), path=jsonpath(loc), detail=str(err["msg"])))
    return found


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    kind: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response."""
    body = problem_body(status, title, detail, kind=kind, instance=instance, **extensions)
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def problem_body(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    kind: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """The problem details object (RFC 9457) of a response or of a stream's error event."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind if kind else "about:blank",
        "title": title,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    for key, value in extensions.items():
        body[key] = (
            [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
            if isinstance(value, list)
            else value
        )
    return body


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
}


def install(app: FastAPI) -> None:
    """Answer every error of the app as problem+json."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            kind=exc.kind,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extensions,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = _TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem_response(
            exc.status_code, title, detail, instance=request.url.path, headers=exc.headers
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            422,
            "Unprocessable content",
            "the request has invalid fields",
            kind="invalid-request",
            instance=request.url.path,
            errors=field_errors(exc.errors()),
        )

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        # Never echo the exception: it may carry patient data from the request.
        return problem_response(500, "Internal server error", instance=request.url.path)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_crash)
