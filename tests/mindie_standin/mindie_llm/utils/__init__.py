"""Stand-in package ``mindie_llm.utils`` (MindIE-LLM 8b4871a: no symbols there either)."""
