"""Stand-in for ``mindie_llm.runtime.utils.loader.weight_utils`` (MindIE-LLM 8b4871a, weight_utils.py:26-112).

Which files are read (:59-92): every ``*.safetensors`` directly in the model directory (none ->
FileNotFoundError); if ``model.safetensors.index.json`` exists, only the files its ``weight_map``
names (others are skipped with a log line). Every tensor name must live in exactly one file (:101-112,
ValueError otherwise); ``get_tensor`` of an unknown name raises ValueError "Weight file was not found
for tensor named with <name>." (:94-99). Tensors come back as CPU tensors. MindIE's path and
permission checks and the W8A8SC per-rank directory are not modelled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import safetensors
import torch
import transformers.utils
from mindie_llm.utils.log.logging import logger


class WeightsFileHandler:
    def __init__(self, model_path: str, extension: str, quantize: str | None = None) -> None:
        self._handlers: dict[str, Any] = {}
        self.quantize = quantize
        self._filenames = self._get_weight_filenames(model_path, extension)
        self._routing = self._load_weight_file_routing()

    @property
    def extension(self) -> str:
        return ".safetensors"

    def release_file_handler(self) -> None:
        self._handlers = {}

    def get_tensor(self, tensor_name: str) -> torch.Tensor:
        filename, tensor_name = self._get_filename(tensor_name)
        return self._get_handler(filename).get_tensor(tensor_name)

    def _get_handler(self, filename: str) -> Any:
        if filename not in self._handlers:
            self._handlers[filename] = safetensors.safe_open(filename, framework="pytorch")
        return self._handlers[filename]

    def _get_weight_filenames(self, model_weight_path: str, extension: str,
                              index_file_name: str = transformers.utils.SAFE_WEIGHTS_INDEX_NAME) -> list[str]:
        directory = Path(model_weight_path)
        if not directory.is_dir():
            raise FileNotFoundError("The input model id is not exists or not a directory")
        if (self.quantize or "").upper() == "W8A8SC":
            raise NotImplementedError("not modelled: W8A8SC per-rank weight directories")
        local_files = list(directory.glob(f"*{extension}"))
        if not local_files:
            raise FileNotFoundError(f"No local weights found with extension {extension};Only safetensor format is "
                                    "supported. Please refer to model's README for more details.")
        index_file_path = os.path.join(model_weight_path, index_file_name)
        if not os.path.isfile(index_file_path):
            return [str(file) for file in local_files]
        with open(index_file_path, encoding="utf-8") as f:
            listed = set(json.load(f).get("weight_map", {}).values())
        for file in local_files:
            if file.name not in listed:
                logger.info(f"{file} is filtered by index_file {index_file_path}.")
        return [str(file) for file in local_files if file.name in listed]

    def _get_filename(self, tensor_name: str) -> tuple[str, str]:
        filename = self._routing.get(tensor_name)
        if filename is None:
            raise ValueError(f"Weight file was not found for tensor named with {tensor_name}.")
        return str(filename), tensor_name

    def _load_weight_file_routing(self) -> dict[str, str]:
        routing: dict[str, str] = {}
        for filename in self._filenames:
            with safetensors.safe_open(filename, framework="pt") as f:
                for key in f.keys():
                    if key in routing:
                        raise ValueError("Weight was found in multiple files.")
                    routing[key] = filename
        return routing
