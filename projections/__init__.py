"""Projections: pure logic `(state, event) -> state` per read model, and its PostgreSQL store.

The pure modules (e.g. `projections.referrals.lifecycle`) import nothing from processors/,
gateway/ or PostgreSQL code; the stores and the frame's database code sit beside them.
"""
