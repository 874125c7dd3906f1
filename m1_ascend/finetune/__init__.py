"""LoRA fine-tuning from openMind ``train`` recipes, LoRA merge/export, and per-request adapter serving.

Modules: ``recipe`` (YAML + openMind key schema), ``data`` (alpaca/sharegpt -> chat tokens),
``trainer`` (Trainer + peft run), ``update_skip`` (gradient-spike update skipping),
``lora_weights`` / ``export`` (merge), ``adapters`` (serving without merging), ``hf_code``
(trust_remote_code files for openMind). Importing this package loads none of them.
"""
