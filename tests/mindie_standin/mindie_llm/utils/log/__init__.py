"""Stand-in package ``mindie_llm.utils.log``.

MindIE-LLM 8b4871a re-exports ``ErrorCode``, ``logger``, ``print_log`` and ``HandlerType`` here; the
stand-in imports ``logger``/``print_log`` from ``mindie_llm.utils.log.logging`` directly.
"""
