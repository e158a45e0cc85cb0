"""Processors: see README."""
