"""The documentation pages load only pinned, integrity-checked scripts and styles: they are on
the dashboard's origin, where the bureau's token is kept (gateway/docs_pages.py)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app

TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
URL = re.compile(r'(?:src|href)="(https?://[^"]+)"')


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_every_third_party_script_and_style_is_pinned_and_checked(path: str) -> None:
    page = TestClient(create_app()).get(path)
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
    loaded = 0
    for tag in TAG.finditer(page.text):
        found = URL.search(tag.group(0))
        if found is None or 'rel="icon"' in tag.group(0) or "shortcut icon" in tag.group(0):
            continue  # inline, or a favicon (an image cannot run)
        loaded += 1
        url = found.group(1)
        assert re.search(r"@\d+\.\d+\.\d+/", url), f"not pinned to one version: {url}"
        assert re.search(r'integrity="sha384-[A-Za-z0-9+/]{64}"', tag.group(0)), tag.group(0)
        assert 'crossorigin="anonymous"' in tag.group(0)
    assert loaded >= 1
    assert "fonts.googleapis.com" not in page.text


def test_the_oauth2_redirect_page_is_served() -> None:
    assert TestClient(create_app()).get("/docs/oauth2-redirect").status_code == 200
