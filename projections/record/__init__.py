"""The shared longitudinal record: timelines per person, consent, access and result recognition."""
