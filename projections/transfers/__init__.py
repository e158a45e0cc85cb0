"""Transfers between members (same person discharged at one, admitted at another within 48 h)."""
