"""The fault campaign: kill, pause and restart the parts while events flow; count what survived."""
