"""The derived rows an entry touches: its result, its order, its consent (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from projections.record.entries import RESULT_KINDS, Entry, EntryKind

RESULT, ORDER, CONSENT = "result", "order", "consent"
# (RESULT|ORDER, institution, id) or (CONSENT, "", consent id): ids are unique per member,
# consent ids across the consortium (a consent may be revoked at another member).
Subject = tuple[str, str, str]


def subjects_of(entry: Entry) -> list[Subject]:
    """The derived rows to re-fold when this entry arrives."""
    if entry.subject_id is None:
        return []
    if entry.kind in RESULT_KINDS:
        found = [(RESULT, entry.institution, entry.subject_id)]
        order_id = entry.detail.get("order_id")
        if order_id:
            found.append((ORDER, entry.institution, str(order_id)))
        return found
    if entry.kind is EntryKind.ORDER:
        return [(ORDER, entry.institution, entry.subject_id)]
    if entry.kind is EntryKind.CONSENT:
        return [(CONSENT, "", entry.subject_id)]
    return []


def touched(entries: Iterable[Entry]) -> list[Subject]:
    """The distinct subjects of these entries, sorted (the lock order)."""
    return sorted({s for e in entries for s in subjects_of(e)})


def statements_of(subject: Subject, entries: Iterable[Entry]) -> list[Entry]:
    """The entries a subject is folded from."""
    kind, institution, subject_id = subject
    if kind == RESULT:
        return [
            e
            for e in entries
            if e.kind in RESULT_KINDS
            and e.institution == institution
            and e.subject_id == subject_id
        ]
    if kind == ORDER:
        return [
            e
            for e in entries
            if e.kind is EntryKind.ORDER
            and e.institution == institution
            and e.subject_id == subject_id
        ]
    return [e for e in entries if e.kind is EntryKind.CONSENT and e.subject_id == subject_id]
