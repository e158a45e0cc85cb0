"""Gateway: see README."""
