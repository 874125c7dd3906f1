"""Datasets: alpaca/sharegpt -> Baichuan-M1 chat tokens as openMind builds them, loss masks, cutoff, located errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from finetune_testing import MEDICAL_QA, write_medical_qa

from m1_ascend.finetune.data import (
    IGNORE_INDEX,
    DatasetError,
    PaddingCollator,
    build_dataset,
    resolve_datasets,
    tokenize_conversation,
)
from m1_ascend.finetune.openmind_template import DEFAULT_SYSTEM_PROMPT
from m1_ascend.tokenizer import M1Tokenizer

SYSTEM = {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}


def trained_text(tokenizer: M1Tokenizer, labels: list[int]) -> str:
    return tokenizer.decode([t for t in labels if t != IGNORE_INDEX], skip_special_tokens=False)


def dataset_info(tmp_path: Path, name: str, data_file: str, formatting: str = "alpaca", **extra: object) -> str:
    """openMind's form: local_path the directory, file_name the file in it."""
    path = tmp_path / "info.json"
    entry = {"local_path": str(tmp_path), "file_name": data_file, "formatting": formatting, **extra}
    path.write_text(json.dumps({name: entry}), encoding="utf-8")
    return str(path)


def test_alpaca_record_becomes_chat_with_only_the_answer_trained(tmp_path: Path, tokenizer: M1Tokenizer) -> None:
    info = write_medical_qa(tmp_path)
    dataset = build_dataset(resolve_datasets("medical_qa,medical_dialogue", str(info)), tokenizer, cutoff_len=256)
    assert len(dataset) == len(MEDICAL_QA) + 2 and dataset.truncated == 0 and not dataset.dropped
    question, answer = MEDICAL_QA[0]
    first = dataset.examples[0]
    # No system prompt in the record: the default one, as openMind's registered template always adds it.
    expected_prompt = tokenizer.apply_chat_template([SYSTEM, {"role": "user", "content": question}])
    assert first.input_ids[:len(expected_prompt)] == expected_prompt
    assert first.input_ids[len(expected_prompt):] == tokenizer.encode(answer) + [tokenizer.eos_token_id]
    assert first.labels[:len(expected_prompt)] == [IGNORE_INDEX] * len(expected_prompt)
    assert trained_text(tokenizer, first.labels) == answer + "</s>"
    assert first.source.endswith("qa.jsonl:1")
    assert dataset.examples[-1].source.endswith("dialogue.json record 1")


def test_alpaca_input_system_and_history(tmp_path: Path, tokenizer: M1Tokenizer,
                                         caplog: pytest.LogCaptureFixture) -> None:
    record = {"instruction": "Answer briefly.", "input": "What is asthma?", "output": "A condition of the airways.",
              "sys": "Be brief.", "hist": [["What is the flu?", "A viral infection."]]}
    (tmp_path / "a.json").write_text(json.dumps([record]), encoding="utf-8")
    info = dataset_info(tmp_path, "d", "a.json", columns={"system": "sys", "history": "hist"})
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset(resolve_datasets("d", info), tokenizer, 512)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the flu?"}, {"role": "assistant", "content": "A viral infection."},
                {"role": "user", "content": "Answer briefly.\nWhat is asthma?"},
                {"role": "assistant", "content": "A condition of the airways."}]
    assert tokenizer.render_chat(messages, add_generation_prompt=False) == (
        "<B_SYS>Be brief.<C_Q>What is the flu?<C_A>A viral infection."
        "<C_Q>Answer briefly.\nWhat is asthma?<C_A>A condition of the airways.")
    first_turn = tokenizer.apply_chat_template(messages[:3], add_generation_prompt=False)
    everything = tokenizer.apply_chat_template(messages, add_generation_prompt=False)
    eos = tokenizer.eos_token_id
    # EOS closes every answer (openMind's layout), so each turn teaches the model to stop.
    assert dataset.examples[0].input_ids == first_turn + [eos] + everything[len(first_turn):] + [eos]
    assert trained_text(tokenizer, dataset.examples[0].labels) == "A viral infection.</s>A condition of the airways.</s>"
    # The record's own system prompt is kept, and the run says openmind-cli would drop it.
    assert dataset.own_system == [f"{tmp_path / 'a.json'} record 0"]
    assert "ignores it and uses 'You are a helpful assistant.' instead" in caplog.text


def test_sharegpt_multi_turn_masks_every_non_assistant_token(tokenizer: M1Tokenizer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "I have a headache."},
                {"role": "assistant", "content": "Since when?"}, {"role": "user", "content": "This morning."},
                {"role": "assistant", "content": "Rest and drink water."}]
    example, truncated = tokenize_conversation(tokenizer, messages, cutoff_len=512)
    assert not truncated
    assert trained_text(tokenizer, example.labels) == "Since when?</s>Rest and drink water.</s>"
    assert len(example.labels) == len(example.input_ids)


def test_cutoff_len_splits_between_question_and_answer_like_openmind(tokenizer: M1Tokenizer) -> None:
    question, answer = "What is hypertension? " * 6, "High blood pressure. " * 6
    messages = [SYSTEM, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    full, _ = tokenize_conversation(tokenizer, messages, 4096)
    prompt_len = full.labels.index(next(t for t in full.labels if t != IGNORE_INDEX))
    answer_ids = full.input_ids[prompt_len:]
    cut, truncated = tokenize_conversation(tokenizer, messages, cutoff_len=len(full.input_ids) // 2)
    assert truncated and len(cut.input_ids) == len(full.input_ids) // 2
    kept_prompt = cut.labels.index(next(t for t in cut.labels if t != IGNORE_INDEX))
    # Both halves shrink (in proportion to their lengths), and each keeps its head.
    assert 0 < kept_prompt < prompt_len and 0 < len(cut.input_ids) - kept_prompt < len(answer_ids)
    assert cut.input_ids[:kept_prompt] == full.input_ids[:kept_prompt]
    assert cut.input_ids[kept_prompt:] == answer_ids[:len(cut.input_ids) - kept_prompt]

    # Once the first turn fills cutoff_len, later turns are dropped whole.
    two_turns = [*messages, {"role": "user", "content": "And then?"}, {"role": "assistant", "content": "Rest."}]
    first_turn_only, truncated = tokenize_conversation(tokenizer, two_turns, len(full.input_ids))
    assert truncated and first_turn_only.input_ids == full.input_ids


def test_records_without_answer_tokens_are_reported(tmp_path: Path, tokenizer: M1Tokenizer) -> None:
    rows = [{"instruction": "What is hypertension?", "output": "High blood pressure."},
            {"instruction": "What is hypertension? " * 20, "output": "High blood pressure."}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    info = dataset_info(tmp_path, "d", "d.jsonl")
    # openMind keeps reserved_label_len answer tokens (default 1) however long the question is ...
    assert len(build_dataset(resolve_datasets("d", info), tokenizer, 24)) == 2
    # ... and with none reserved, the long question takes all of cutoff_len: that record is reported.
    dataset = build_dataset(resolve_datasets("d", info), tokenizer, 24, reserved_label_len=0)
    assert dataset.truncated == 2 and dataset.dropped == [f"{tmp_path / 'd.jsonl'}:2"]


def test_dataset_info_reads_local_path_as_openmind_does(tmp_path: Path, tokenizer: M1Tokenizer,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "project" / "data"
    data.mkdir(parents=True)
    (data / "qa.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    (data / "other.jsonl").write_text(json.dumps({"instruction": "q2", "output": "a2"}) + "\n")
    info = tmp_path / "project" / "info.json"
    monkeypatch.chdir(tmp_path / "project")

    def files(entry: dict[str, str]) -> list[str]:
        info.write_text(json.dumps({"d": entry}))
        return [p.name for p in resolve_datasets("d", str(info))[0].files]

    with caplog.at_level(logging.WARNING):
        assert files({"local_path": "data", "file_name": "qa.jsonl"}) == ["qa.jsonl"]  # from the current directory
        assert files({"local_path": str(data), "file_name": "qa.jsonl"}) == ["qa.jsonl"]  # absolute
        assert files({"local_path": "data"}) == ["other.jsonl", "qa.jsonl"]  # a directory: all its data files
        assert not caplog.records
        monkeypatch.chdir(tmp_path)  # the old m1-ascend form: a file, next to the dataset_info file
        assert files({"local_path": "data/qa.jsonl"}) == ["qa.jsonl"]
    assert "old m1-ascend form, which openmind-cli cannot read" in caplog.text
    assert f'write {{"local_path": "{Path("project") / "data"}", "file_name": "qa.jsonl"}}' in caplog.text
    with pytest.raises(DatasetError, match="local_path 'nowhere' is not a directory .openMind reads local_path"):
        files({"local_path": "nowhere", "file_name": "qa.jsonl"})
    with pytest.raises(DatasetError, match="missing.jsonl does not exist"):
        files({"local_path": str(data), "file_name": "missing.jsonl"})


@pytest.mark.parametrize("lines, line_no, match", [
    (['{"instruction": "q", "output": "a"}', '{"instruction": "q", "output": }'], 2, "invalid JSON"),
    (['{"instruction": "q", "output": "a"}', "", '{"instruction": "q"}'], 3, "missing or empty 'output'"),
    (['{"instruction": 5, "output": "a"}'], 1, "'instruction' must be a string"),
    (['["q", "a"]'], 1, "expected a JSON object"),
])
def test_malformed_jsonl_record_reports_its_line(tmp_path: Path, tokenizer: M1Tokenizer, lines: list[str],
                                                 line_no: int, match: str) -> None:
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=match) as err:
        build_dataset(resolve_datasets("d", dataset_info(tmp_path, "d", "bad.jsonl")), tokenizer, 64)
    assert f"bad.jsonl:{line_no}:" in str(err.value)


@pytest.mark.parametrize("conversation, match", [
    ([{"from": "gpt", "value": "a"}], "alternate user, assistant starting with user"),
    ([{"from": "human", "value": "q"}], "must end with an assistant turn"),
    ([{"from": "human", "value": "q"}, {"from": "doctor", "value": "a"}], "turn 1 has from='doctor'"),
    ([{"from": "human", "value": ""}, {"from": "gpt", "value": "a"}], "turn 0 has no text"),
])
def test_malformed_sharegpt_record_reports_its_index(tmp_path: Path, tokenizer: M1Tokenizer,
                                                     conversation: list[dict[str, str]], match: str) -> None:
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    (tmp_path / "bad.json").write_text(json.dumps([good, good, {"conversations": conversation}]), encoding="utf-8")
    with pytest.raises(DatasetError, match=match) as err:
        build_dataset(resolve_datasets("d", dataset_info(tmp_path, "d", "bad.json", "sharegpt")), tokenizer, 64)
    assert "bad.json record 2:" in str(err.value)


def test_broken_json_array_reports_its_line(tmp_path: Path, tokenizer: M1Tokenizer) -> None:
    (tmp_path / "bad.json").write_text('[\n  {"instruction": "q", "output": "a"},\n  {"instruction": \n]\n')
    with pytest.raises(DatasetError, match=r"bad\.json:4: invalid JSON"):
        build_dataset(resolve_datasets("d", dataset_info(tmp_path, "d", "bad.json")), tokenizer, 64)


def test_dataset_info_problems(tmp_path: Path) -> None:
    info = dataset_info(tmp_path, "d", "missing.jsonl")
    with pytest.raises(DatasetError, match="'alpaca_zh' is not defined in custom_dataset_info"):
        resolve_datasets("alpaca_zh", info)
    (tmp_path / "x.jsonl").write_text("")
    with pytest.raises(DatasetError, match="unknown keys"):
        resolve_datasets("d", dataset_info(tmp_path, "d", "x.jsonl", template="baichuan"))
    with pytest.raises(DatasetError, match="formatting must be alpaca or sharegpt"):
        resolve_datasets("d", dataset_info(tmp_path, "d", "x.jsonl", "openai"))
    hub = tmp_path / "hub.json"
    hub.write_text(json.dumps({"d": {"hub_url": "someone/medical"}}))
    with pytest.raises(DatasetError, match="only has hub_url"):
        resolve_datasets("d", str(hub))


def test_num_samples_and_directory_local_path(tmp_path: Path, tokenizer: M1Tokenizer) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        (data / name).write_text("\n".join(json.dumps({"instruction": f"{name} {i}", "output": "ok"})
                                           for i in range(3)))
    info = str(tmp_path / "info.json")
    Path(info).write_text(json.dumps({"d": {"local_path": str(data), "num_samples": 4}}))
    dataset = build_dataset(resolve_datasets("d", info), tokenizer, 64)
    assert [ex.source.rsplit("/", 1)[1] for ex in dataset.examples] == ["a.jsonl:1", "a.jsonl:2", "a.jsonl:3",
                                                                         "b.jsonl:1"]


def test_collator_pads_right_and_masks_pads() -> None:
    batch = PaddingCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                                             {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][1].tolist() == [8] + [0] * 7
    assert batch["labels"][0].tolist() == [-100, 6, 7] + [-100] * 5
    assert batch["attention_mask"].sum(1).tolist() == [3, 1]
    assert PaddingCollator(pad_token_id=0, max_length=20)([{"input_ids": [1], "labels": [1]}])["input_ids"].shape == (1, 20)
