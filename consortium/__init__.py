"""The consortium CLI and the settings every process reads."""
