"""Stand-in package ``mindie_llm.runtime.model_runner.forward_metadata`` (MindIE-LLM 8b4871a: no symbols there either)."""
