"""The OpenAI-compatible server, driven by the real ``openai`` client against a real uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from server_testing import RunningServer, running_server, wait_for

from m1_ascend.tokenizer import M1Tokenizer

KEY = "sk-test-4f1c2e9b7d"
OTHER_KEY = "sk-other-a83b5c"
MODEL = "m1-tiny"
PATIENT_TEXT = "Patient Zhang Wei MRN 4471923 reports chest pain"
LONG = {"ignore_eos": True}  # vLLM extension: generate exactly max_tokens


@pytest.fixture(scope="module")
def srv(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    work = tmp_path_factory.mktemp("server")
    keys = work / "keys.txt"
    keys.write_text(f"# id key\nward-7 {KEY}\nlab {OTHER_KEY}\n")
    keys.chmod(0o600)
    with running_server(tiny_model_dir, served_model_name=MODEL, api_keys_file=keys, audit_log=work / "audit.jsonl",
                        max_num_seqs=4, max_body_bytes=64 * 1024) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: RunningServer) -> openai.OpenAI:
    return srv.client(KEY)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> M1Tokenizer:
    return M1Tokenizer.from_pretrained(tiny_model_dir)


def post(srv: RunningServer, path: str, content: bytes | None = None, json: object = None,
         key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{srv.url}{path}", content=content, json=json, headers=headers, timeout=60)


def chat_body(**fields: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, **fields}


def test_chat_completion(client: openai.OpenAI, tokenizer: M1Tokenizer) -> None:
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "hi"}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0,
                                           extra_body=LONG)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion" and reply.model == MODEL
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason == "length"
    assert reply.usage.prompt_tokens == len(tokenizer.apply_chat_template(messages))
    assert reply.usage.completion_tokens == 6
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 6


def test_chat_stream_matches_non_stream(client: openai.OpenAI) -> None:
    request = dict(model=MODEL, messages=[{"role": "user", "content": "what helps a headache"}], max_tokens=12,
                   temperature=0, extra_body=LONG)
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **request))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert len({c.id for c in chunks}) == 1


def test_completions_text_and_token_prompts(client: openai.OpenAI, tokenizer: M1Tokenizer) -> None:
    prompt = "the patient"
    by_text = client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0, extra_body=LONG)
    by_ids = client.completions.create(model=MODEL, prompt=tokenizer.encode(prompt), max_tokens=5, temperature=0,
                                       extra_body=LONG)
    assert by_text.object == "text_completion" and by_text.choices[0].finish_reason == "length"
    assert by_text.choices[0].text == by_ids.choices[0].text
    assert by_text.usage.prompt_tokens == len(tokenizer.encode(prompt)) and by_text.usage.completion_tokens == 5
    streamed = client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0, stream=True,
                                         extra_body=LONG)
    assert "".join(c.choices[0].text for c in streamed) == by_text.choices[0].text


def test_stop_string_cuts_the_text(client: openai.OpenAI) -> None:
    base = dict(model=MODEL, prompt="a b c", max_tokens=24, temperature=0, extra_body=LONG)
    full = client.completions.create(**base).choices[0].text
    stop = full.strip()[len(full.strip()) // 2:][:2]
    assert stop, f"greedy output too short to pick a stop string: {full!r}"
    cut = client.completions.create(stop=[stop], **base).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full[:full.index(stop)]


def test_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    request = dict(model=MODEL, prompt="x", max_tokens=16, temperature=1.0, top_p=0.95, extra_body=LONG)
    first = client.completions.create(seed=1234, **request).choices[0].text
    assert client.completions.create(seed=1234, **request).choices[0].text == first


def test_models_lists_the_served_name(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].max_model_len == 512  # the tiny preset's context


def test_auth_failures_are_openai_401s(srv: RunningServer) -> None:
    for key in ("sk-wrong", KEY + "x", KEY[:-1], OTHER_KEY.upper()):
        client = srv.client(api_key=key)
        with pytest.raises(openai.AuthenticationError) as err:
            client.models.list()
        assert err.value.status_code == 401
        assert err.value.body["type"] == "authentication_error" and err.value.body["code"] == "invalid_api_key"
    raw = post(srv, "/v1/chat/completions", json=chat_body(), key=None)
    assert raw.status_code == 401 and raw.headers["www-authenticate"] == "Bearer"
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}
    basic = httpx.get(f"{srv.url}/v1/models", headers={"Authorization": f"Basic {KEY}"})
    assert basic.status_code == 401
    # Health and metrics stay open for probes and scrapers.
    assert httpx.get(f"{srv.url}/health").status_code == 200
    assert httpx.get(f"{srv.url}/metrics").status_code == 200


def test_second_key_is_recorded_by_id(srv: RunningServer) -> None:
    reply = srv.client(OTHER_KEY).completions.create(model=MODEL, prompt="hello", max_tokens=2)
    record = srv.audit_record(reply.id)
    assert record["key_id"] == "lab" and record["status"] == 200


BAD_REQUESTS = [
    # (name, path, raw body or None, json body or None, expected status, expected param or None)
    ("malformed json", "/v1/chat/completions", b'{"model": "m1-tiny", "messages": [', None, 400, None),
    ("not utf-8", "/v1/chat/completions", b'{"model": "m1-tiny\xff\xfe"}', None, 400, None),
    ("json array", "/v1/completions", b"[1, 2]", None, 400, None),
    ("NaN temperature", "/v1/completions", b'{"model": "m1-tiny", "prompt": "x", "temperature": NaN}', None, 400,
     None),
    ("missing messages", "/v1/chat/completions", None, {"model": MODEL}, 400, "messages"),
    ("empty messages", "/v1/chat/completions", None, chat_body(messages=[]), 400, "messages"),
    ("wrong role", "/v1/chat/completions", None, chat_body(messages=[{"role": "doctor", "content": "x"}]), 400,
     "messages.0.role"),
    ("system not first", "/v1/chat/completions", None,
     chat_body(messages=[{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]), 400, "messages"),
    ("content not text", "/v1/chat/completions", None,
     chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), 400,
     "messages.0.content"),
    ("negative max_tokens", "/v1/chat/completions", None, chat_body(max_tokens=-5), 400, "max_tokens"),
    ("zero max_tokens", "/v1/completions", None, {"model": MODEL, "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("huge max_tokens", "/v1/chat/completions", None, chat_body(max_tokens=10**12), 400, "max_tokens"),
    ("max_tokens as string", "/v1/chat/completions", None, chat_body(max_tokens="10"), 400, "max_tokens"),
    ("temperature as string", "/v1/completions", None, {"model": MODEL, "prompt": "x", "temperature": "hot"}, 400,
     "temperature"),
    ("temperature out of range", "/v1/completions", None, {"model": MODEL, "prompt": "x", "temperature": 7}, 400,
     "temperature"),
    ("stream as string", "/v1/completions", None, {"model": MODEL, "prompt": "x", "stream": "yes"}, 400, "stream"),
    ("unknown field", "/v1/chat/completions", None, chat_body(temprature=0.5), 400, "temprature"),
    ("n too large", "/v1/chat/completions", None, chat_body(n=1000), 400, "n"),
    ("too many stops", "/v1/completions", None, {"model": MODEL, "prompt": "x", "stop": ["a", "b", "c", "d", "e"]},
     400, "stop"),
    ("prompt longer than context", "/v1/completions", None, {"model": MODEL, "prompt": [5] * 600}, 400,
     "prompt"),
    ("token id outside vocab", "/v1/completions", None, {"model": MODEL, "prompt": [5, 99999]}, 400, "prompt"),
    ("empty prompt", "/v1/completions", None, {"model": MODEL, "prompt": ""}, 400, "prompt"),
    ("unknown model", "/v1/chat/completions", None, chat_body(model="gpt-4"), 404, "model"),
    ("body too large", "/v1/completions", None, {"model": MODEL, "prompt": "x" * 70_000}, 413, None),
]


@pytest.mark.parametrize(("name", "path", "raw", "body", "status", "param"), BAD_REQUESTS,
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_input_gets_openai_error(srv: RunningServer, name: str, path: str, raw: bytes | None, body: object,
                                     status: int, param: str | None) -> None:
    response = post(srv, path, content=raw, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert len(error["message"]) > 10


def test_bad_inputs_do_not_wedge_the_server(srv: RunningServer, client: openai.OpenAI) -> None:
    for _, path, raw, body, _, _ in BAD_REQUESTS:
        post(srv, path, content=raw, json=body)
    assert httpx.get(f"{srv.url}/health").json()["status"] == "ok"
    assert client.completions.create(model=MODEL, prompt="ok", max_tokens=2).choices[0].finish_reason
    assert srv.state.engine.num_in_flight == 0
    assert httpx.get(f"{srv.url}/v2/nothing").json()["error"]["type"] == "not_found_error"


def test_chunked_body_over_the_limit_is_refused(srv: RunningServer) -> None:
    chunks = iter([b'{"model": "m1-tiny", "prompt": "', b"x" * 40_000, b"x" * 40_000, b'"}'])
    response = post(srv, "/v1/completions", content=chunks)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_openai_client_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="x", max_tokens=100_000)
    assert err.value.body["code"] == "context_length_exceeded"


def test_disconnect_mid_stream_aborts_and_frees_kv_blocks(srv: RunningServer) -> None:
    aborted_before = srv.metric("m1_ascend_request_finish_total", reason="abort")
    body = {"model": MODEL, "prompt": "tell me everything", "max_tokens": 480, "stream": True, **LONG}
    with httpx.stream("POST", f"{srv.url}/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60) as response:
        assert response.status_code == 200
        events = 0
        for line in response.iter_lines():
            events += line.startswith("data: ")
            if events == 3:
                break
        assert srv.state.engine.num_in_flight == 1
    request_id = response.headers["x-request-id"]

    def settled() -> bool:
        engine = srv.state.loaded.engine
        return (srv.metric("m1_ascend_request_finish_total", reason="abort") == aborted_before + 1
                and srv.state.engine.num_in_flight == 0 and srv.metric("m1_ascend_kv_blocks_used") == 0
                and engine.stats()["num_running"] == 0)

    wait_for(settled, 10, "the aborted request's KV blocks to be freed")
    record = srv.audit_record(request_id)
    assert record["finish_reason"] == "abort" and 3 <= record["completion_tokens"] < 480


def test_non_streaming_disconnect_aborts(srv: RunningServer) -> None:
    aborted_before = srv.metric("m1_ascend_request_finish_total", reason="abort")
    body = {"model": MODEL, "prompt": "long answer please", "max_tokens": 480, **LONG}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{srv.url}/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=httpx.Timeout(60, read=0.3))
    wait_for(lambda: srv.metric("m1_ascend_request_finish_total", reason="abort") == aborted_before + 1
             and srv.state.engine.num_in_flight == 0, 10, "the abandoned request to be aborted")


def test_metrics_cover_the_contract(srv: RunningServer, client: openai.OpenAI) -> None:
    client.completions.create(model=MODEL, prompt="metrics", max_tokens=3, extra_body=LONG)
    names = {name for name, _ in srv.metrics()}
    for expected in ("m1_ascend_http_requests_total", "m1_ascend_queue_depth", "m1_ascend_running_sequences",
                     "m1_ascend_kv_blocks_used", "m1_ascend_kv_blocks_free", "m1_ascend_prompt_tokens_total",
                     "m1_ascend_generation_tokens_total", "m1_ascend_time_to_first_token_seconds_count",
                     "m1_ascend_time_per_output_token_seconds_count"):
        assert expected in names, expected
    assert srv.metric("m1_ascend_http_requests_total", endpoint="/v1/completions", status="200") >= 1
    assert srv.metric("m1_ascend_http_requests_total", endpoint="/v1/models", status="401") >= 1
    assert srv.metric("m1_ascend_time_per_output_token_seconds_count") >= 2
    assert srv.metric("m1_ascend_kv_blocks_free") > 0


def test_audit_log_has_no_patient_text(srv: RunningServer, client: openai.OpenAI,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PATIENT_TEXT}],
                                           max_tokens=5)
    refused = post(srv, "/v1/chat/completions", json=chat_body(messages=[{"role": "nurse", "content": PATIENT_TEXT}]))
    assert srv.audit_record(refused.headers["x-request-id"])["status"] == 400
    record = srv.audit_record(reply.id)
    audit_text = Path(srv.settings.audit_log).read_text(encoding="utf-8")
    assert record["key_id"] == "ward-7" and record["status"] == 200 and record["model"] == MODEL
    assert record["prompt_tokens"] == reply.usage.prompt_tokens
    assert record["completion_tokens"] == reply.usage.completion_tokens
    assert record["latency_s"] >= record["ttft_s"] > 0 and record["finished_at"] >= record["received_at"]
    for secret in ("Zhang", "4471923", "chest", KEY, OTHER_KEY):
        assert secret not in audit_text
        assert secret not in caplog.text
    assert "prompt_text" not in record and "completion_text" not in record
