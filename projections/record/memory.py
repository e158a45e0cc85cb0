"""The whole shared record in memory: the reference the PostgreSQL store must agree with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from events.envelope import Event
from projections.persons import members, resolve
from projections.record.aggregates import (
    Aggregate,
    LocalPatient,
    RecordKey,
    RetiredPerson,
    evolve,
    key_of,
)
from projections.record.checks import Check, checks_of
from projections.record.consents import Consent, current_consent
from projections.record.entries import RESULT_KINDS, Entry
from projections.record.recognition import (
    OrderedTest,
    PossibleRepeat,
    PriorResult,
    RecognitionTable,
    Recognizable,
    ordered_test,
    possible_repeats,
    prior_of,
    recognizable,
)
from projections.record.referrals import ReferralLink, referral_links
from projections.record.results import CurrentOrder, CurrentResult, current_order, current_result
from projections.record.subjects import CONSENT, ORDER, RESULTS, statements_of, touched

LocalKey = tuple[str, str]


@dataclass
class MemoryRecord:
    """Every aggregate after a set of events, and the views derived from them."""

    aggregates: dict[RecordKey, Aggregate] = field(default_factory=dict)

    @classmethod
    def of(cls, events: Iterable[Event]) -> MemoryRecord:
        """The record after these events, in the given order."""
        record = cls()
        for event in events:
            key = key_of(event)
            if key is not None:
                record.aggregates[key] = evolve(record.aggregates.get(key), event)
        return record

    @property
    def patients(self) -> dict[LocalKey, LocalPatient]:
        """Local patients by (institution, local id)."""
        return {
            (a.institution, a.local_id): a
            for a in self.aggregates.values()
            if isinstance(a, LocalPatient)
        }

    @property
    def survivors(self) -> dict[str, str]:
        """Retired person id → the person it was merged into."""
        return {
            a.person_id: a.survivor_id
            for a in self.aggregates.values()
            if isinstance(a, RetiredPerson) and a.survivor_id is not None
        }

    @property
    def links(self) -> dict[LocalKey, str | None]:
        """The person each local patient is linked to."""
        return {k: p.person_id for k, p in self.patients.items()}

    def entries(self) -> list[Entry]:
        """Every entry of every local patient."""
        return [e for p in self.patients.values() for e in p.added]

    def local_patients_of(self, person_id: str) -> set[LocalKey]:
        """The local patients whose linked person resolves to this person."""
        ids = members(self.survivors, person_id)
        return {k for k, p in self.patients.items() if p.person_id in ids}

    def person_entries(self, person_id: str) -> list[Entry]:
        """Every entry of the person's local patients."""
        mine = self.local_patients_of(person_id)
        return [e for e in self.entries() if (e.institution, e.local_id) in mine]

    def timeline_ids(self, person_id: str) -> set[str]:
        """The ids a timeline lists: non-result entries, and results once each (current form)."""
        entries = self.person_entries(person_id)
        plain = {e.entry_id for e in entries if e.kind not in RESULT_KINDS}
        results = {
            f"{r.institution}|{r.kind.value}|{r.result_id}"
            for r in self.results().values()
            if (r.institution, r.local_id) in self.local_patients_of(person_id)
        }
        return plain | results

    def results(self) -> dict[tuple[str, str, str], CurrentResult]:
        """Current results by (institution, kind, result id)."""
        entries = self.entries()
        found = {}
        for s in touched(entries):
            if s[0] in RESULTS and (r := current_result(statements_of(s, entries))) is not None:
                found[(s[1], s[0], s[2])] = r
        return found

    def orders(self) -> dict[tuple[str, str], CurrentOrder]:
        """Current orders by (institution, order id)."""
        entries, results = self.entries(), self.results()
        found = {}
        for s in touched(entries):
            if s[0] != ORDER:
                continue
            answers = [r.status for r in results.values() if (r.institution, r.order_id) == s[1:]]
            order = current_order(statements_of(s, entries), answers)
            if order is not None:
                found[(s[1], s[2])] = order
        return found

    def consents(self) -> dict[str, Consent]:
        """Current consents by consent id."""
        entries = self.entries()
        found = {}
        for s in touched(entries):
            if s[0] == CONSENT and (c := current_consent(statements_of(s, entries))) is not None:
                found[s[2]] = c
        return found

    def person_consents(self, person_id: str) -> list[Consent]:
        """The consents signed for any of the person's local patients."""
        mine = self.local_patients_of(person_id)
        return [c for c in self.consents().values() if (c.institution, c.local_id) in mine]

    def person_referrals(self, person_id: str) -> list[ReferralLink]:
        """The referrals in the person's record."""
        return referral_links(self.person_entries(person_id))

    def repeats(self, person_id: str, table: RecognitionTable) -> list[PossibleRepeat]:
        """The person's orders that may repeat another member's valid result."""
        tests, priors = self._recognition(self.local_patients_of(person_id))
        return possible_repeats(tests, priors, table)

    def checks(self, table: RecognitionTable) -> dict[tuple[str, str], Check]:
        """Every checked order of every linked person, by (institution, order id)."""
        survivors = self.survivors
        persons = {resolve(survivors, p) for p in self.links.values() if p is not None}
        found: dict[tuple[str, str], Check] = {}
        for person in persons:
            tests, priors = self._recognition(self.local_patients_of(person))
            found.update((c.key, c) for c in checks_of(tests, priors, table))
        return found

    def recognizable(
        self, person_id: str, table: RecognitionTable, now: datetime
    ) -> list[Recognizable]:
        """The person's results still valid at now."""
        _, priors = self._recognition(self.local_patients_of(person_id))
        return recognizable(priors, table, now)

    def _recognition(self, mine: set[LocalKey]) -> tuple[list[OrderedTest], list[PriorResult]]:
        """These local patients' orders and final-or-not results as recognition sees them."""
        orders = self.orders()
        priors = [
            prior_of(r, orders.get((r.institution, r.order_id or "")))
            for r in self.results().values()
            if (r.institution, r.local_id) in mine
        ]
        tests = [ordered_test(o) for o in orders.values() if (o.institution, o.local_id) in mine]
        return tests, priors
