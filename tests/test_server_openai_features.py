"""The OpenAI fields integrators' tools send, through the real ``openai`` client and langchain-openai on loopback.

The tiny model has random weights, so every structured answer below is valid only because the grammar
made it so.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import torch
from deploy_testing import DEPLOY, run_script
from pydantic import BaseModel
from server_testing import RunningServer, running_server, wait_for

from m1_ascend.server.protocol import IGNORED_FIELDS_HEADER
from m1_ascend.server.responses import TokenTexts
from m1_ascend.server.tools import parse_tool_calls
from m1_ascend.server.watchdog import systemd_watchdog
from m1_ascend.tokenizer import M1Tokenizer

KEY = "sk-features-1"
MODEL = "m1-tiny"
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["diagnosis", "severity"],
          "properties": {"diagnosis": {"type": "string", "maxLength": 12}, "severity": {"type": "integer"}}}
WEATHER = {"type": "function", "function": {"name": "get_vitals", "description": "latest vitals",
                                            "parameters": {"type": "object", "additionalProperties": False,
                                                           "required": ["bed"],
                                                           "properties": {"bed": {"type": "integer"}}}}}
LABS = {"type": "function", "function": {"name": "order_lab", "parameters": {
    "type": "object", "additionalProperties": False, "required": ["test"],
    "properties": {"test": {"enum": ["cbc", "bmp"]}}}}}
HI = [{"role": "user", "content": "hi"}]


class Finding(BaseModel):
    diagnosis: str
    severity: int


@pytest.fixture(scope="module")
def srv(tiny_model_dir: Path) -> Iterator[RunningServer]:
    with running_server(tiny_model_dir, served_model_name=MODEL, api_key=KEY, max_num_seqs=8) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: RunningServer) -> openai.OpenAI:
    return srv.client(KEY)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> M1Tokenizer:
    return M1Tokenizer.from_pretrained(tiny_model_dir)


def chat(client: openai.OpenAI, **fields: object):
    return client.chat.completions.create(**{"model": MODEL, "messages": HI, "max_tokens": 80, **fields})


def conforms(value: dict) -> bool:
    return set(value) == {"diagnosis", "severity"} and isinstance(value["diagnosis"], str) \
        and len(value["diagnosis"]) <= 12 and isinstance(value["severity"], int)


# -- structured output ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.0, 1.0, 1.8])
def test_json_schema_strict_parses_and_validates(client, temperature):
    reply = chat(client, temperature=temperature, seed=7,
                 response_format={"type": "json_schema", "json_schema": {"name": "finding", "strict": True,
                                                                         "schema": SCHEMA}})
    assert reply.choices[0].finish_reason == "stop"
    assert conforms(json.loads(reply.choices[0].message.content))


def test_parse_helper_and_json_object_and_text(client):
    parsed = client.chat.completions.parse(model=MODEL, messages=HI, max_tokens=80, response_format=Finding)
    assert isinstance(parsed.choices[0].message.parsed, Finding)
    obj = chat(client, temperature=1.0, seed=3, response_format={"type": "json_object"})
    assert isinstance(json.loads(obj.choices[0].message.content), dict)
    assert chat(client, max_tokens=4, response_format={"type": "text"}).choices[0].message.content is not None


def test_structured_stream_equals_whole(client):
    request = dict(model=MODEL, messages=HI, max_tokens=60, temperature=0,
                   response_format={"type": "json_schema", "json_schema": {"name": "f", "schema": SCHEMA}})
    whole = client.chat.completions.create(**request).choices[0].message.content
    chunks = client.chat.completions.create(stream=True, **request)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole


def test_bad_schema_is_a_400_naming_response_format(client):
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}})
    assert err.value.body["param"] == "response_format"


# -- tools ------------------------------------------------------------------------------------------------------

def test_required_tool_call_has_schema_valid_arguments(client):
    reply = chat(client, tools=[WEATHER, LABS], tool_choice="required", temperature=1.0, seed=5,
                 parallel_tool_calls=False)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    args = json.loads(call.function.arguments)
    assert call.type == "function" and call.id.startswith("call_")
    assert (call.function.name, set(args)) in (("get_vitals", {"bed"}), ("order_lab", {"test"}))


def test_named_tool_choice_streams_call_deltas(client):
    named = {"type": "function", "function": {"name": "order_lab"}}
    chunks = list(chat(client, tools=[WEATHER, LABS], tool_choice=named, stream=True, temperature=0))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "order_lab" and calls[0].index == 0
    assert json.loads(calls[0].function.arguments)["test"] in ("cbc", "bmp")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_conversation_with_tool_calls_and_results(client, tokenizer):
    messages = [{"role": "user", "content": "vitals of bed 4?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_vitals", "arguments": '{"bed": 4}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "<C_A>HR 80 BP 120/80"}]
    reply = chat(client, messages=messages, tools=[WEATHER], max_tokens=5)
    assert reply.choices[0].finish_reason in ("stop", "length")  # auto: the random model answers in text
    ids = httpx.post(f"{client.base_url}".replace("/v1/", "/tokenize"), headers={"Authorization": f"Bearer {KEY}"},
                     json={"model": MODEL, "messages": messages}).json()["tokens"]
    role_ids = set(tokenizer.role_token_ids.values())
    # Only the template puts role tokens: user, assistant(call) and the tool turn, then the answer's <C_A>.
    assert [t for t in ids if t in role_ids] == [tokenizer.role_token_ids[r] for r in ("<C_Q>", "<C_A>", "<C_Q>",
                                                                                        "<C_A>")]


def test_auto_parses_calls_out_of_text():
    tools = [openai.types.chat.ChatCompletionToolParam(**WEATHER)]  # a dict, as the client sends it
    from m1_ascend.server.protocol import Tool

    parsed = [Tool.model_validate(t) for t in tools]
    content, calls = parse_tool_calls('<tool_call>{"name": "get_vitals", "arguments": {"bed": 2}}</tool_call>', parsed)
    assert content is None and [(c.name, json.loads(c.arguments)) for c in calls] == [("get_vitals", {"bed": 2})]
    assert parse_tool_calls("<tool_call>{broken</tool_call>", parsed)[1] == []
    assert parse_tool_calls('<tool_call>{"name": "unknown", "arguments": {}}</tool_call>', parsed)[1] == []


# -- logprobs -----------------------------------------------------------------------------------------------------

@torch.no_grad()
def reference_logprobs(tiny_model, ids: list[int]) -> torch.Tensor:
    return torch.log_softmax(tiny_model(torch.tensor([ids])).logits[0].float(), dim=-1)


def test_chat_logprobs_match_a_plain_forward_pass(client, tokenizer, tiny_model):
    reply = chat(client, max_tokens=5, temperature=0.9, seed=2, logprobs=True, top_logprobs=3,
                 presence_penalty=1.0, extra_body={"ignore_eos": True})
    content = reply.choices[0].logprobs.content
    prompt = tokenizer.apply_chat_template(HI)
    texts = TokenTexts(tokenizer, tokenizer.vocab_size)
    by_bytes = {texts.raw(i): i for i in range(tokenizer.vocab_size)}
    output_ids = [by_bytes[bytes(e.bytes)] for e in content]
    reference = reference_logprobs(tiny_model, prompt + output_ids)
    for j, entry in enumerate(content):
        row = reference[len(prompt) - 1 + j]
        assert entry.logprob == pytest.approx(row[output_ids[j]].item(), abs=1e-4)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(row.topk(3).values.tolist(), abs=1e-4)
        assert bytes(entry.bytes).decode() == entry.token
    streamed = list(chat(client, max_tokens=5, temperature=0.9, seed=2, logprobs=True, top_logprobs=3,
                         presence_penalty=1.0, extra_body={"ignore_eos": True}, stream=True))
    flat = [e.logprob for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert flat == pytest.approx([e.logprob for e in content])


def test_completion_echo_logprobs_cover_the_prompt(client, tokenizer, tiny_model):
    prompt = "the patient has a fever"
    ids = tokenizer.encode(prompt)
    for _ in range(2):  # the second time the prompt's blocks are in the prefix cache
        reply = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0, echo=True,
                                          logprobs=2, extra_body={"ignore_eos": True})
        lp = reply.choices[0].logprobs
        assert reply.choices[0].text.startswith(prompt)
        assert len(lp.tokens) == len(ids) + 2 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        reference = reference_logprobs(tiny_model, ids)
        assert lp.token_logprobs[1:len(ids)] == pytest.approx([reference[t - 1, ids[t]].item()
                                                               for t in range(1, len(ids))], abs=1e-4)
        assert all(len(top) <= 2 for top in lp.top_logprobs[1:])
        assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    streamed = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0, echo=True,
                                              logprobs=2, stream=True, extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in streamed) == reply.choices[0].text
    assert [v for c in streamed if c.choices[0].logprobs for v in c.choices[0].logprobs.token_logprobs] == \
        pytest.approx(lp.token_logprobs)


def test_lm_eval_style_loglikelihood_batch(client, tokenizer, tiny_model):
    """The payload lm-eval's local-completions sends for multiple-choice tasks, and its reading of the answer."""
    context = tokenizer.encode("Fever is a sign of")
    options = [tokenizer.encode(" infection"), tokenizer.encode(" health")]
    reply = client.completions.create(model=MODEL, prompt=[context + o for o in options], max_tokens=1,
                                      temperature=0, logprobs=1, echo=True, seed=1234)
    for option, choice in zip(options, reply.choices, strict=True):
        lp = choice.logprobs
        continuation = slice(len(context), len(context) + len(option))  # the generated token is last
        score = sum(lp.token_logprobs[continuation])
        greedy = all(max(top.values()) == value for top, value in zip(lp.top_logprobs[continuation],
                                                                      lp.token_logprobs[continuation], strict=True))
        ids = context + option
        reference = reference_logprobs(tiny_model, ids)
        expected = sum(reference[t - 1, ids[t]].item() for t in range(len(context), len(ids)))
        assert score == pytest.approx(expected, abs=1e-3)
        assert greedy == all(reference[t - 1].argmax().item() == ids[t] for t in range(len(context), len(ids)))


# -- n, penalties, bias, batches -----------------------------------------------------------------------------

def test_n_choices_have_their_own_seed_streams(client):
    request = dict(model=MODEL, messages=HI, max_tokens=8, temperature=1.5, seed=11, n=3,
                   extra_body={"ignore_eos": True})
    first = client.chat.completions.create(**request)
    again = client.chat.completions.create(**request)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2] and len(set(texts)) > 1
    assert [c.message.content for c in again.choices] == texts
    assert first.usage.completion_tokens == 24 and first.usage.prompt_tokens == again.usage.prompt_tokens
    streamed = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **request))
    joined = ["".join(c.choices[0].delta.content or "" for c in streamed if c.choices and c.choices[0].index == i)
              for i in range(3)]
    assert joined == texts and streamed[-1].usage.completion_tokens == 24


def test_logit_bias_and_penalties(client, tokenizer):
    token = tokenizer.encode(" blood")[0]
    biased = client.completions.create(model=MODEL, prompt="x", max_tokens=4, temperature=1.0,
                                       logit_bias={str(token): 100}, extra_body={"ignore_eos": True})
    assert biased.choices[0].text == " blood" * 4
    plain = client.completions.create(model=MODEL, prompt="a b", max_tokens=20, temperature=0,
                                      extra_body={"ignore_eos": True}).choices[0].text
    penalized = client.completions.create(model=MODEL, prompt="a b", max_tokens=20, temperature=0,
                                          frequency_penalty=2.0, presence_penalty=2.0,
                                          extra_body={"ignore_eos": True}).choices[0].text
    assert penalized != plain


def test_batched_prompts_are_prompt_major(client, tokenizer):
    prompts = ["the patient", "blood pressure"]
    reply = client.completions.create(model=MODEL, prompt=prompts, n=2, max_tokens=3, temperature=0,
                                      extra_body={"ignore_eos": True})
    single = [client.completions.create(model=MODEL, prompt=p, max_tokens=3, temperature=0,
                                        extra_body={"ignore_eos": True}).choices[0].text for p in prompts]
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    assert [c.text for c in reply.choices] == [single[0], single[0], single[1], single[1]]
    assert reply.usage.prompt_tokens == sum(len(tokenizer.encode(p)) for p in prompts)
    assert reply.usage.completion_tokens == 12
    by_ids = client.completions.create(model=MODEL, prompt=[tokenizer.encode(p) for p in prompts], max_tokens=3,
                                       temperature=0, extra_body={"ignore_eos": True})
    assert [c.text for c in by_ids.choices] == single


# -- request handling ----------------------------------------------------------------------------------------

def test_explicit_nulls_mean_unset_and_ignored_fields_are_named(srv):
    body = {"model": MODEL, "messages": HI, "max_tokens": 3, "temperature": None, "top_p": None, "n": None,
            "stop": None, "seed": None, "presence_penalty": None, "frequency_penalty": None, "logit_bias": None,
            "logprobs": None, "top_logprobs": None, "response_format": None, "tools": None, "tool_choice": None,
            "stream": None, "stream_options": None, "user": None, "max_completion_tokens": None,
            "parallel_tool_calls": None, "metadata": {"ward": "7"}, "store": False, "service_tier": "auto"}
    response = httpx.post(f"{srv.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                          timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers[IGNORED_FIELDS_HEADER] == "metadata, store, service_tier"
    refused = httpx.post(f"{srv.url}/v1/chat/completions", json={**body, "web_search_options": {}},
                         headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "web_search_options"
    misspelt = httpx.post(f"{srv.url}/v1/chat/completions", json={**body, "stroe": True},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert misspelt.status_code == 400 and misspelt.json()["error"]["param"] == "stroe"


def test_models_retrieve_openapi_and_tokenizer_endpoints(srv, client, tokenizer):
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    assert httpx.get(f"{srv.url}/openapi.json").status_code == 401
    schema = httpx.get(f"{srv.url}/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
    chat_schema = schema["components"]["schemas"]["ChatCompletionRequest"]
    assert {"response_format", "tools", "logprobs", "n"} <= set(chat_schema["properties"])
    assert "/v1/chat/completions" in schema["paths"] and "/tokenize" in schema["paths"]
    auth = {"Authorization": f"Bearer {KEY}"}
    ids = httpx.post(f"{srv.url}/tokenize", json={"model": MODEL, "prompt": "fever"}, headers=auth).json()
    assert ids["tokens"] == tokenizer.encode("fever") and ids["count"] == len(ids["tokens"])
    text = httpx.post(f"{srv.url}/detokenize", json={"model": MODEL, "tokens": ids["tokens"]}, headers=auth).json()
    assert text == {"prompt": "fever"}


# -- langchain-openai ------------------------------------------------------------------------------------------

def test_langchain_structured_output_and_bind_tools(srv):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=f"{srv.url}/v1", api_key=KEY, max_tokens=80, temperature=0, max_retries=0)
    for method in ("json_schema", "function_calling"):
        result = llm.with_structured_output(Finding, method=method).invoke("Assess: mild fever.")
        assert isinstance(result, Finding), method
    as_dict = llm.with_structured_output(SCHEMA | {"title": "finding"}, method="json_mode").invoke("Assess, in JSON.")
    assert isinstance(as_dict, dict)

    def get_vitals(bed: int) -> str:
        """Latest vitals of a bed."""
        return "ok"

    message = llm.bind_tools([get_vitals], tool_choice="get_vitals").invoke("vitals of bed 3?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_vitals"
    assert isinstance(message.tool_calls[0]["args"]["bed"], int)


# -- a stuck engine ----------------------------------------------------------------------------------------------

def test_health_reports_a_stalled_engine_step(tiny_model_dir: Path):
    """Issue 15.6: a step that never returns turns /health to 503 'stalled' and shows in /metrics."""
    with running_server(tiny_model_dir, served_model_name=MODEL, engine_stall_seconds=0.5) as srv:
        engine = srv.state.loaded.engine
        release = threading.Event()
        real_step = engine.step

        def blocking_step():
            release.wait(30)
            return real_step()

        engine.step = blocking_step
        reply = []
        caller = threading.Thread(target=lambda: reply.append(srv.client().completions.create(
            model=MODEL, prompt="x", max_tokens=2)))
        caller.start()
        try:
            health = wait_for(lambda: (r := httpx.get(f"{srv.url}/health")).status_code == 503 and r, 20,
                              "/health to report the stall")
            assert health.json()["status"] == "stalled" and health.json()["stall_seconds"] >= 0.5
            assert srv.metric("m1_ascend_engine_stall_seconds") > 0.5
            probe = run_script(DEPLOY / "healthcheck", "--target", "serve", "--url", srv.url)
            assert probe.returncode == 1 and "UNHEALTHY" in probe.stdout  # the monitor restarts on this
        finally:
            release.set()
            engine.step = real_step
        caller.join(30)
        assert reply and reply[0].choices[0].finish_reason in ("stop", "length")
        wait_for(lambda: httpx.get(f"{srv.url}/health").status_code == 200, 10, "/health to recover")
        assert srv.metric("m1_ascend_engine_stall_seconds") == 0
        assert run_script(DEPLOY / "healthcheck", "--target", "serve", "--url", srv.url).returncode == 0


def test_systemd_watchdog_pings_only_while_healthy(tmp_path: Path):
    """The unit's WatchdogSec restarts a stalled server: pings stop while /health says stalled."""
    sock_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(sock_path))
    receiver.settimeout(0.5)
    status = ["ok"]
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "100000"}  # ping every 50 ms

    async def run_for(seconds: float) -> None:
        task = asyncio.create_task(systemd_watchdog(lambda: status[0], env))
        await asyncio.sleep(seconds)
        task.cancel()

    with receiver:
        asyncio.run(run_for(0.3))
        assert receiver.recv(64) == b"WATCHDOG=1"
        while True:  # drain
            try:
                receiver.recv(64)
            except TimeoutError:
                break
        status[0] = "stalled"
        asyncio.run(run_for(0.3))
        with pytest.raises(TimeoutError):
            receiver.recv(64)
    assert asyncio.run(asyncio.wait_for(systemd_watchdog(lambda: "ok", {}), 1)) is None  # no systemd: no-op
