"""The API documentation pages (`/docs`, `/redoc`) with their scripts pinned and checked.

FastAPI's defaults load Swagger UI and ReDoc from jsdelivr at a floating major version
(`swagger-ui-dist@5`, `redoc@2`) with no Subresource Integrity. The pages are served on the
gateway's origin, the origin of the bureau dashboard, which keeps its bearer token in
`sessionStorage` for the tab: whatever script the CDN served could read it. So each asset is
pinned to one version and carries the SHA-384 of its bytes (computed from the npm package of that
version, which jsdelivr serves unchanged; a changed file does not run), and ReDoc loads no Google
Fonts (a third-party request from a hospital's browser, and unreachable from many Chinese
networks). To move a version: `npm pack swagger-ui-dist@X`, then
`openssl dgst -sha384 -binary package/<file> | base64`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

_CDN = "https://cdn.jsdelivr.net/npm"
SWAGGER_JS = (
    f"{_CDN}/swagger-ui-dist@5.36.0/swagger-ui-bundle.js",
    "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+",
)
SWAGGER_CSS = (
    f"{_CDN}/swagger-ui-dist@5.36.0/swagger-ui.css",
    "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc",
)
REDOC_JS = (
    f"{_CDN}/redoc@2.5.4/bundles/redoc.standalone.js",
    "sha384-w447zOpYfw/1Tv/5AK9NfHTlQIqE3RVR6KY62jCyy9zNDgO64cMwGGP1Fj0zJVf5",
)
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def _checked(page: HTMLResponse, *assets: tuple[str, str]) -> HTMLResponse:
    """The page with an integrity attribute on each asset's tag (each must be there once)."""
    html = bytes(page.body).decode()
    for url, digest in assets:
        for attribute in ("src", "href"):
            tag = f'{attribute}="{url}"'
            if html.count(tag) == 1:
                checked = f'{tag} integrity="{digest}" crossorigin="anonymous"'
                html = html.replace(tag, checked)
                break
        else:
            raise RuntimeError(f"the documentation page does not load {url} once")
    return HTMLResponse(html, headers={"Referrer-Policy": "no-referrer"})


def install(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Serve `/docs`, its OAuth2 redirect and `/redoc` (create the app with both URLs None)."""
    title = f"{app.title} — API"
    swagger = _checked(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=SWAGGER_JS[0],
            swagger_css_url=SWAGGER_CSS[0],
            oauth2_redirect_url=OAUTH2_REDIRECT,
        ),
        SWAGGER_JS,
        SWAGGER_CSS,
    )
    redoc = _checked(
        get_redoc_html(
            openapi_url=openapi_url, title=title, redoc_js_url=REDOC_JS[0], with_google_fonts=False
        ),
        REDOC_JS,
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return swagger

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return redoc
