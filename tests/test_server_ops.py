"""Server operations: the bounded queue (429), the audit debug flag, and TLS, each on its own real server."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from server_testing import running_server, wait_for

MODEL = "m1-tiny"
LONG_STREAM = {"model": MODEL, "prompt": "go on", "max_tokens": 480, "stream": True, "ignore_eos": True}


def await_first_event(response: httpx.Response) -> Iterator[str]:
    """Read up to the first SSE event; keep the returned iterator alive (closing it closes the connection)."""
    lines = response.iter_lines()
    while not next(lines).startswith("data: "):
        pass
    return lines


def test_full_queue_answers_429_with_retry_after(tiny_model_dir: Path, tmp_path: Path) -> None:
    with running_server(tiny_model_dir, served_model_name=MODEL, max_num_seqs=1, max_queue=1,
                        retry_after_seconds=3) as srv:
        url = f"{srv.url}/v1/completions"
        with httpx.stream("POST", url, json=LONG_STREAM, timeout=60) as running:
            running_lines = await_first_event(running)
            with httpx.stream("POST", url, json=LONG_STREAM, timeout=60) as waiting:
                assert waiting.status_code == 200  # admitted: it waits for the running one
                wait_for(lambda: srv.metric("m1_ascend_queue_depth") == 1, 5, "the second request to be queued")
                with pytest.raises(openai.RateLimitError) as err:
                    srv.client().completions.create(model=MODEL, prompt="one more", max_tokens=2)
                assert err.value.response.headers["retry-after"] == "3"
                assert err.value.body["code"] == "queue_full" and err.value.body["type"] == "rate_limit_error"
                assert srv.metric("m1_ascend_requests_rejected_queue_full_total") == 1
                assert srv.metric("m1_ascend_http_requests_total", endpoint="/v1/completions", status="429") == 1
                assert srv.state.engine.num_in_flight == 2
            running_lines.close()  # both clients hang up: both requests are aborted
        wait_for(lambda: srv.state.engine.num_in_flight == 0, 10, "both streams to be aborted")
        reply = srv.client().completions.create(model=MODEL, prompt="now there is room", max_tokens=2)
        assert reply.choices[0].finish_reason in ("stop", "length")


def test_graceful_shutdown_ends_streams_cleanly(tiny_model_dir: Path) -> None:
    """What SIGTERM triggers (uvicorn sets should_exit): the open stream ends with a final chunk and [DONE]."""
    with running_server(tiny_model_dir, served_model_name=MODEL, shutdown_grace_seconds=0.5) as srv:
        with httpx.stream("POST", f"{srv.url}/v1/completions", json=LONG_STREAM, timeout=60) as response:
            lines = await_first_event(response)
            srv.server.should_exit = True
            events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["choices"][0]["finish_reason"] in ("abort", "length")
        wait_for(lambda: srv.state.engine.num_in_flight == 0 and srv.state.loaded.engine.stats()["num_running"] == 0,
                 10, "the engine to be empty")


def test_audit_text_only_with_the_debug_flag(tiny_model_dir: Path, tmp_path: Path) -> None:
    prompt = "debug-only visit note 58213"
    with running_server(tiny_model_dir, served_model_name=MODEL, audit_log=tmp_path / "audit.jsonl",
                        audit_log_text=True) as srv:
        reply = srv.client().completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0)
        record = srv.audit_record(reply.id)
    assert record["prompt_text"] == prompt
    assert record["completion_text"] == reply.choices[0].text
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o077 == 0  # owner-only file


@pytest.fixture(scope="module")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a self-signed certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_tls(tiny_model_dir: Path, self_signed_cert: tuple[Path, Path]) -> None:
    cert, key = self_signed_cert
    with running_server(tiny_model_dir, served_model_name=MODEL, tls_cert=cert, tls_key=key, api_key="tls-key") as srv:
        assert srv.url.startswith("https://")
        # Closed at once: an idle TLS keep-alive connection would hold up the server's shutdown.
        trust_ours = openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=cert))
        with srv.client("tls-key", http_client=trust_ours) as trusted:
            reply = trusted.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                    max_tokens=3)
        assert reply.choices[0].message.content is not None
        with pytest.raises(openai.APIConnectionError):  # the system trust store does not know our certificate
            srv.client("tls-key").models.list()
        with pytest.raises(httpx.HTTPError):
            httpx.get(srv.url.replace("https://", "http://") + "/health", timeout=1)
