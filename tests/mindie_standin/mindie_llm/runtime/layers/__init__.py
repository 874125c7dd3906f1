"""Stand-in package ``mindie_llm.runtime.layers`` (MindIE-LLM 8b4871a: no symbols there either)."""
