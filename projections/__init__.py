"""Projections: see README."""
