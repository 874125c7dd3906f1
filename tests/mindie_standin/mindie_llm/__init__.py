"""Stand-in for the ``mindie_llm`` package (tests only)."""
