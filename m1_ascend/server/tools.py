"""Tool calling for Baichuan-M1, whose official chat template has no tool format (docs/server.md, "Tool calls").

The format is plain text inside the ordinary roles, so it works through any checkpoint's template:

* the tool list goes at the end of the system message (one is created when there is none), with
  the instruction to answer a call with ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
* an assistant message with ``tool_calls`` is rendered as its content followed by those blocks;
* ``tool`` results become a user turn of ``<tool_response>`` blocks (consecutive results share one).

All of it is message *content*, which the tokenizer encodes as ordinary text, so neither a tool
result nor a tool's arguments can produce a role token (``<C_Q>``, ``<C_A>``, ...).

``tool_choice`` ``required`` and named choices are enforced with a grammar (the call blocks, with the
arguments constrained to each tool's JSON schema); ``auto`` parses the blocks out of the text.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..engine.structured_output import GrammarSpec
from .protocol import ChatMessage, NamedToolChoice, Tool

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOLS_HEADER = (f'# Tools\nTo call a function, reply with only {CALL_OPEN}{{"name": ..., "arguments": {{...}}}}'
                f"{CALL_CLOSE}, one block per call. Functions:\n")
_CALL_PATTERN = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it


def _describe(tool: Tool) -> str:
    function = tool.function
    entry = {"name": function.name, "description": function.description or "",
             "parameters": function.parameters or {"type": "object", "properties": {}}}
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def _call_block(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments)
    except ValueError:
        args = arguments  # the client sent non-JSON arguments back; show them as they were
    return CALL_OPEN + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + CALL_CLOSE


def template_messages(messages: list[ChatMessage], tools: list[Tool] | None) -> list[dict[str, str]]:
    """The conversation in the template's three roles, with tools, calls and results written as text."""
    out: list[dict[str, str]] = []
    for message in messages:
        role = "system" if message.role == "developer" else message.role
        if role == "tool":
            block = f'<tool_response id="{message.tool_call_id}">\n{message.content}\n</tool_response>'
            if out and out[-1].get("from_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "from_tool": "1"})
            continue
        content = message.content or ""
        if message.tool_calls:
            content += "".join(_call_block(c.function.name, c.function.arguments) for c in message.tool_calls)
        out.append({"role": role, "content": content})
    if tools:
        listing = TOOLS_HEADER + "\n".join(_describe(t) for t in tools)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{listing}" if out[0]["content"] else listing
        else:
            out.insert(0, {"role": "system", "content": listing})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def _call_schema(tool: Tool) -> dict[str, Any]:
    parameters = tool.function.parameters or {"type": "object"}
    return {"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
            "properties": {"name": {"const": tool.function.name}, "arguments": parameters}}


def tool_grammar(tools: list[Tool], choice: str | NamedToolChoice, parallel: bool) -> GrammarSpec | None:
    """The grammar of a forced call (``required`` or a named function); None for ``auto`` / ``none``."""
    if isinstance(choice, NamedToolChoice):
        chosen = [t for t in tools if t.function.name == choice.function.name]
    elif choice == "required":
        chosen = tools
    else:
        return None
    schema = _call_schema(chosen[0]) if len(chosen) == 1 else {"anyOf": [_call_schema(t) for t in chosen]}
    repeat = "+" if parallel else ""
    call = f'"{CALL_OPEN}" %json {json.dumps(schema)} "{CALL_CLOSE}"'
    return GrammarSpec.lark(f"start: call{repeat}\ncall: {call}\n")


def parse_tool_calls(text: str, tools: list[Tool]) -> tuple[str | None, list[ParsedCall]]:
    """Split generated text into content and calls; text that is not well-formed calls stays content."""
    if CALL_OPEN not in text:
        return text, []
    names = {t.function.name for t in tools}
    calls = []
    for match in _CALL_PATTERN.finditer(text):
        try:
            value = json.loads(match.group(1))
        except ValueError:
            return text, []
        if not isinstance(value, dict) or value.get("name") not in names or not isinstance(value.get("arguments"), dict):
            return text, []
        calls.append(ParsedCall(value["name"], json.dumps(value["arguments"], ensure_ascii=False)))
    if not calls:
        return text, []
    content = text[:text.index(CALL_OPEN)].strip()
    return content or None, calls


def could_become_call(text: str) -> bool:
    """Whether a streamed prefix may still turn out to be a call (its start is held back until it is known)."""
    stripped = text.lstrip()
    return CALL_OPEN.startswith(stripped) or stripped.startswith(CALL_OPEN)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"
