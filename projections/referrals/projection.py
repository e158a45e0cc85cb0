"""The referral projection declared for the frame."""

from __future__ import annotations

from uuid import UUID

from events.topics import Family
from projections.frame.declaration import Projection
from projections.referrals.lifecycle import Referral, evolve, key_of
from projections.referrals.store import ReferralStore
from projections.referrals.tables import TABLES

REFERRALS: Projection[UUID, Referral] = Projection(
    name="referrals",
    families=(Family.REFERRAL,),
    key_of=key_of,
    evolve=evolve,
    store=ReferralStore(),
    tables=TABLES,
    # The board is derive(facts, clock): rows saved before the final sweep need no earlier one.
    rebuild_sweeps_at_end=True,
)
