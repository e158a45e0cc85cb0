"""A seeded, simulated county consortium: residents, care flows and the events they cause."""
