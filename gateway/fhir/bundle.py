"""Searchset Bundles with keyset paging: an opaque cursor names the last entry of a page."""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.fhir.mapped import Mapped
from gateway.fhir.record import order_key
from gateway.fhir.systems import Json

DEFAULT_COUNT = 50
MAX_COUNT = 500


class InvalidCursorError(ValueError):
    """A paging cursor this server did not make."""


def encode_cursor(key: tuple[int, str]) -> str:
    """The opaque token of a position in the searchset order."""
    raw = json.dumps([key[0], key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[int, str]:
    """The position a token names; InvalidCursorError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        at, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursorError("the paging cursor is not one this server made") from exc
    if not isinstance(at, int) or isinstance(at, bool) or not isinstance(key, str):
        raise InvalidCursorError("the paging cursor is not one this server made")
    return at, key


@dataclass(frozen=True, slots=True)
class Page:
    """The entries of one page, the cursor of the next (None on the last), and the total."""

    items: tuple[Mapped, ...]
    next_cursor: str | None
    total: int


def page(items: Sequence[Mapped], cursor: str | None, count: int) -> Page:
    """The page after the cursor's position of items already in searchset order.

    Keyset, not offset: an entry added to the record while a client walks the pages shows on
    the first page (it is newer), never shifts the others into a repeat or a gap.
    """
    keys = [order_key(m) for m in items]
    start = 0 if cursor is None else bisect_right(keys, decode_cursor(cursor))
    chosen = tuple(items[start : start + count])
    more = start + count < len(items)
    next_cursor = encode_cursor(order_key(chosen[-1])) if more and chosen else None
    return Page(chosen, next_cursor, len(items))


def searchset(base: str, found: Page, self_url: str, next_url: str | None) -> Json:
    """A searchset Bundle of a page: self and next links, full URLs, every entry a match."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    bundle: Json = {"resourceType": "Bundle", "type": "searchset", "total": found.total}
    bundle["link"] = links
    if found.items:  # FHIR JSON has no empty arrays
        bundle["entry"] = [
            {"fullUrl": f"{base}/{m.key}", "resource": m.resource, "search": {"mode": "match"}}
            for m in found.items
        ]
    return bundle
