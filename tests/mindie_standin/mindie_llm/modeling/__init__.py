"""Stand-in package ``mindie_llm.modeling`` (MindIE-LLM 8b4871a: no symbols there either)."""
