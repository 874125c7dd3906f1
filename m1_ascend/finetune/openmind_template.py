"""Baichuan-M1's chat layout as an openMind 1.0.0 template, and the system prompt both trainers insert.

openMind renders a conversation from five template strings (``flow/datasets/template.py``): the
system prompt once before the first question, each question, each answer (plus EOS), and a
separator before every later question. Filled in here, they give the tokenizer's chat layout
(architecture.md §5, ``<B_SYS>system<C_Q>question<C_A>answer``). openMind 1.0.0 always starts
with the template's default system prompt, so ``m1-ascend finetune`` gives records without a
system prompt the same one, and both trainers see the same tokens. The separator stays empty:
openMind fills it with the question's text, so a non-empty one repeats every later question.
"""

from __future__ import annotations

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
TEMPLATE_NAME = "baichuan_m1"

# One entry of openMind's flow/configs/templates.json (a list of these).
OPENMIND_TEMPLATE: dict[str, str] = {
    "name": TEMPLATE_NAME,
    "system_template": "<B_SYS>{content}",
    "user_template": "<C_Q>{content}<C_A>",
    "assistant_template": "{content}",
    "separator_template": "",
    "default_system": DEFAULT_SYSTEM_PROMPT,
}
