"""Stand-in package ``mindie_llm.runtime`` (MindIE-LLM 8b4871a: no symbols there either)."""
