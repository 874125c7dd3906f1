"""Stand-in package ``mindie_llm.text_generator.adapter.torch_utils`` (MindIE-LLM 8b4871a: no symbols there either)."""
