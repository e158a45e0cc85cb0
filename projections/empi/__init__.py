"""The consortium patient index (EMPI): pure matching and index logic, and its read model."""
