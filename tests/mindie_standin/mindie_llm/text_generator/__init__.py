"""Stand-in package ``mindie_llm.text_generator`` (MindIE-LLM 8b4871a: no symbols there either)."""
