"""Stand-in package ``mindie_llm.runtime.utils.loader`` (MindIE-LLM 8b4871a: no symbols there either)."""
