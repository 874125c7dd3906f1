"""Stand-in for ``mindie_llm.runtime.config.configuration_utils`` (MindIE-LLM 8b4871a, runtime/config/configuration_utils.py).

``LLMConfig`` is the service-side feature config the router loads from ``runtime/conf/config.json``
(or ``llm_config_path``): JSON keys become attributes, nested objects ``SectionConfig``s, string
values are converted (``"false"`` -> False, ``""`` -> None, digits -> int; :176-198); ``update``
overlays the ``models`` dict, ``merge_models_config(model_type)`` overlays that model's section.
``__repr__`` (pretty printing) is omitted.
"""

from __future__ import annotations

import json
from typing import Any


def convert_type(value: Any) -> Any:
    """Numbers and booleans pass; strings become bool/None/int/float when they read as one."""
    if isinstance(value, (int, float, bool)) or not isinstance(value, str):
        return value
    value = value.strip()
    lowered = value.lower()
    if lowered in ("true", "false", "yes", "no", "on", "off"):
        return lowered in ("true", "yes", "on")
    if lowered in ("none", "null", ""):
        return None
    if value.isdigit():
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value


class SectionConfig:
    """A nested JSON object as attributes (configuration_utils.py:231-297)."""

    def __init__(self) -> None:
        pass

    def __repr__(self) -> str:
        return "SectionConfig(" + ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_")) + ")"

    @classmethod
    def create(cls, value: Any) -> Any:
        if isinstance(value, dict):
            section = cls()
            for key, item in value.items():
                setattr(section, key, cls.create(item))
            return section
        if isinstance(value, list):
            return [cls.create(item) for item in value]
        return convert_type(value)

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, SectionConfig):
                return value.to_dict()
            if isinstance(value, list):
                return [plain(item) for item in value]
            return value

        return {k: plain(v) for k, v in vars(self).items() if not k.startswith("_")}

    def get(self, key: str) -> Any:
        current: Any = self
        for part in key.split("."):
            if not hasattr(current, part):
                return None
            current = getattr(current, part)
        return current


class LLMConfig:
    def __init__(self, config_path: str) -> None:
        self._config_path = config_path
        self._config_dict: dict[str, Any] = {}
        self._load_config()

    def update(self, config_dict: dict[str, Any], allow_new_keys: bool = False, current_path: str = "") -> None:
        """Overlay ``config_dict``; unknown keys are added only with ``allow_new_keys``."""
        if not config_dict:
            return
        self._recursive_update(base=self, update=config_dict, allow_new_keys=allow_new_keys, current_path=current_path)

    def merge_models_config(self, model_name: str) -> None:
        section = self.get(model_name)
        if section is not None:
            self.update(section.to_dict(), allow_new_keys=False)

    def check_config(self, validators: Any) -> None:
        sections = {k: v.to_dict() if isinstance(v, SectionConfig) else v
                    for k, v in vars(self).items() if not k.startswith("_")}
        try:
            validators.validate(sections)
        except KeyError as error:
            raise KeyError(f"Validation failed, because some keys are missing: {error}") from error
        except Exception as error:
            raise RuntimeError(f"Validation failed: {error}") from error

    def get(self, key: str) -> Any:
        return SectionConfig.get(self, key)  # same dotted walk (configuration_utils.py:90-106)

    def _load_config(self) -> None:
        try:
            with open(self._config_path, encoding="utf-8") as f:
                self._config_dict = json.load(f)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"config file not found: {self._config_path}") from error
        except json.JSONDecodeError as error:
            raise ValueError("Invalid json in config file") from error
        self._apply_config(self._config_dict)

    def _apply_config(self, config_dict: dict[str, Any]) -> None:
        for key, value in config_dict.items():
            if hasattr(self, key) and isinstance(value, dict):
                self._recursive_update(self, value, allow_new_keys=True, current_path=key)
            else:
                setattr(self, key, SectionConfig.create(value))

    def _recursive_update(self, base: Any, update: dict[str, Any], current_path: str, allow_new_keys: bool = False) -> None:
        if not isinstance(update, dict):
            raise ValueError(f"Expected dict at {current_path}, got {type(update)}")
        target = base.get(current_path) if current_path else base
        for key, value in update.items():
            path = f"{current_path}.{key}" if current_path else key
            if isinstance(value, dict):
                child = base.get(path)
                if child is not None:
                    self._recursive_update(base=child, update=value, current_path="", allow_new_keys=allow_new_keys)
                else:
                    setattr(target, key, SectionConfig.create(value))
            elif hasattr(target, key) or allow_new_keys:
                setattr(target, key, SectionConfig.create(value))
