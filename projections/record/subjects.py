"""The derived rows an entry touches: its result, its order, its consent (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from projections.record.entries import RESULT_KINDS, Entry, EntryKind

ORDER, CONSENT = "order", "consent"
# A result's subject names its kind: a member numbers lab results and imaging reports apart.
RESULTS = frozenset(k.value for k in RESULT_KINDS)
# (LAB_RESULT|IMAGING_REPORT|ORDER, institution, id) or (CONSENT, "", consent id): ids are unique
# per member (a result id per kind), consent ids across the consortium (a consent may be revoked
# at another member).
Subject = tuple[str, str, str]


def subjects_of(entry: Entry) -> list[Subject]:
    """The derived rows to re-fold when this entry arrives."""
    if entry.subject_id is None:
        return []
    if entry.kind in RESULT_KINDS:
        found = [(entry.kind.value, entry.institution, entry.subject_id)]
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
    if kind in RESULTS:
        return [
            e
            for e in entries
            if e.kind.value == kind and e.institution == institution and e.subject_id == subject_id
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
