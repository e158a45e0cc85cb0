"""An OpenTelemetry server span around every HTTP request, continuing the caller's trace."""

from __future__ import annotations

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_tracer = trace.get_tracer("consortium.gateway")


class TracingMiddleware:
    """Starts one span per request; handlers and the publisher run inside it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with _tracer.start_as_current_span(
            f"{method} {scope['path']}", context=propagate.extract(carrier), kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", scope["path"])

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_traced)
            route = scope.get("route")
            if route is not None and hasattr(route, "path"):
                # Name by the route template, not the raw path: ids would explode cardinality.
                span.update_name(f"{method} {route.path}")
                span.set_attribute("http.route", route.path)
