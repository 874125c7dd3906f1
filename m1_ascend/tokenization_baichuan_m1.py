"""Baichuan-M1 tokenizer for transformers' ``AutoTokenizer`` with ``trust_remote_code`` (openMind loads it so).

`m1-ascend export-hf-code` copies this file verbatim into a checkpoint and points
``tokenizer_config.json`` ``auto_map`` at it, so it imports only sentencepiece and transformers
(4.45, openMind's pin, up to 5.x) and never m1-ascend. For ordinary text it gives the ids of
m1-ascend's own tokenizer: the checkpoint's SentencePiece ``tokenizer.model``, no BOS or EOS added,
and the added tokens of ``tokenizer_config.json`` (the role tokens ``<B_SYS>``, ``<C_Q>``,
``<C_A>``...) as single ids. Like every transformers tokenizer, and unlike m1-ascend's, it turns a
role-token string inside text into the role id: that is how openMind's chat templates emit them.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import sentencepiece as spm
from transformers import PreTrainedTokenizer


class BaichuanM1Tokenizer(PreTrainedTokenizer):
    """A slow (Python) tokenizer over the checkpoint's SentencePiece model."""

    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, unk_token: Any = "<unk>", bos_token: Any = "<s>", eos_token: Any = "</s>",
                 pad_token: Any = None, **kwargs: Any) -> None:
        self.vocab_file = vocab_file
        self.sp_model = self._load(vocab_file)  # before super().__init__, which asks for the vocabulary
        # Baichuan-M1 prompts start without BOS and the chat template closes turns itself.
        kwargs.pop("add_bos_token", None)
        kwargs.pop("add_eos_token", None)
        super().__init__(unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token, **kwargs)

    @staticmethod
    def _load(vocab_file: str) -> spm.SentencePieceProcessor:
        processor = spm.SentencePieceProcessor()
        processor.Load(vocab_file)
        return processor

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for datasets' multi-process map: the SentencePiece model is reloaded from its file."""
        state = self.__dict__.copy()
        state["sp_model"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.sp_model = self._load(self.vocab_file)

    @property
    def vocab_size(self) -> int:
        return self.sp_model.get_piece_size()

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        # A model may be wider than its vocabulary: ids past the last piece decode as unk.
        return self.sp_model.id_to_piece(index) if 0 <= index < self.vocab_size else str(self.unk_token)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.sp_model.decode_pieces(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        target = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "tokenizer.model")
        if os.path.abspath(self.vocab_file) != os.path.abspath(target):
            shutil.copyfile(self.vocab_file, target)
        return (target,)
