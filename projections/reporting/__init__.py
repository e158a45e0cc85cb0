"""De-identified aggregates for county health bureaus: counts per institution, level and window."""
