"""Processors: faust-streaming apps, one consumer group per projection (thin loops)."""
