"""Stand-in package ``mindie_llm.modeling.model_wrapper.aclgraph`` (MindIE-LLM 8b4871a: no symbols there either)."""
