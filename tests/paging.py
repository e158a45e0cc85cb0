"""Following a read API listing's `next` cursors to its end."""

from __future__ import annotations

from typing import Any

import httpx


def all_pages(
    client: httpx.Client, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every item of a listing, following `next` (None-valued filters are left out)."""
    items: list[dict[str, Any]] = []
    query = {k: v for k, v in params.items() if v is not None}
    while True:
        response = client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        if body["next"] is None:
            return items
        query["after"] = body["next"]
