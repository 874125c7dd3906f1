"""Stand-in package ``mindie_llm.text_generator.utils``.

MindIE-LLM 8b4871a re-exports ``InputMetadata``, ``ModelInput``, ``KVCacheSettings`` and other TG
helpers here; the stand-in imports them from their own modules and does not re-export them.
"""
