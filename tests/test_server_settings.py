"""Server settings layering (file < environment < flags) and the API-key store."""

from __future__ import annotations

from pathlib import Path

import pytest

from m1_ascend.server.auth import ApiKeyStore, KeyFileError
from m1_ascend.server.errors import ApiError
from m1_ascend.server.settings import ServerSettings, SettingsError, load_settings


def test_layers_override_in_order(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("port: 9001\nmax-queue: 7\nhost: 0.0.0.0\nlog_level: debug\n")
    env = {"M1_ASCEND_PORT": "9002", "M1_ASCEND_MAX_QUEUE": "8", "M1_ASCEND_CONFIG": str(config)}
    settings = load_settings({"port": 9003, "max_queue": None}, environ=env)
    assert (settings.port, settings.max_queue, settings.host, settings.log_level) == (9003, 8, "0.0.0.0", "debug")
    assert settings.exposed and not settings.auth_enabled


def test_enforce_eager_defaults_to_the_devices_choice() -> None:
    assert load_settings({}, environ={}).enforce_eager is None
    assert load_settings({}, environ={"M1_ASCEND_ENFORCE_EAGER": "false"}).enforce_eager is False
    assert load_settings({"enforce_eager": True}, environ={"M1_ASCEND_ENFORCE_EAGER": "false"}).enforce_eager is True


def test_json_config_file_and_defaults(tmp_path: Path) -> None:
    config = tmp_path / "serve.json"
    config.write_text('{"audit_log": "/var/log/m1/audit.jsonl", "enable_prefix_caching": false}')
    settings = load_settings({}, environ={}, config_file=config)
    assert settings.audit_log == Path("/var/log/m1/audit.jsonl") and settings.enable_prefix_caching is False
    assert (settings.host, settings.port, settings.device) == ("127.0.0.1", 8000, "auto")
    assert not settings.exposed


@pytest.mark.parametrize(("env", "cli", "file_text", "message"), [
    ({"M1_ASCEND_PORT": "eighty"}, {}, None, "setting 'port' (from M1_ASCEND_PORT in the environment)"),
    ({}, {"port": 70000}, None, "setting 'port' (from command line)"),
    ({}, {}, "max_queue: -1\n", "setting 'max_queue' (from config file"),
    ({}, {}, "prot: 1\n", "unknown setting(s) prot"),
    ({}, {}, "- a\n- b\n", "expected a mapping"),
    ({}, {}, "port: [1,\n", "not valid YAML/JSON"),
    ({}, {"device": "gpu"}, None, "setting 'device'"),
    ({}, {"tls_cert": "cert.pem"}, None, "tls_cert and tls_key must be given together"),
    ({"M1_ASCEND_API_KEY": "k"}, {"api_keys_file": "keys.txt"}, None, "either api_key or api_keys_file"),
    ({}, {"model": "/no/such/checkpoint"}, None, "model: no such directory"),
])
def test_bad_settings_name_the_setting_and_source(tmp_path: Path, env: dict, cli: dict, file_text: str | None,
                                                  message: str) -> None:
    config = None
    if file_text is not None:
        config = tmp_path / "serve.yaml"
        config.write_text(file_text)
    with pytest.raises(SettingsError) as err:
        load_settings(cli, environ=env, config_file=config)
    assert message in str(err.value)


def test_secrets_stay_out_of_repr() -> None:
    settings = ServerSettings(api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(settings) and settings.auth_enabled


def test_key_store_from_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# clinic keys\nward-7 sk-aaa111  # night shift\n\nlab sk-bbb222\n")
    keys.chmod(0o600)
    store = ApiKeyStore.from_settings(ServerSettings(api_keys_file=keys))
    assert store.authenticate("Bearer sk-bbb222") == "lab"
    assert store.authenticate("bearer  sk-aaa111 ") == "ward-7"
    for header in (None, "", "Bearer", "Basic sk-aaa111", "Bearer sk-aaa11", "Bearer sk-aaa1111"):
        with pytest.raises(ApiError) as err:
            store.authenticate(header)
        assert err.value.status == 401 and "sk-" not in err.value.message


def test_no_keys_means_open() -> None:
    assert ApiKeyStore.from_settings(ServerSettings()).authenticate(None) is None


@pytest.mark.parametrize(("text", "message"), [
    ("only-one-field\n", "line 1: expected '<key-id> <key>'"),
    ("a k1\na k2\n", "line 2: duplicate key id 'a'"),
    ("a k1\nb k1\n", "line 2: this key is already listed"),
    ("bad/id k1\n", "line 1: key id must be"),
    ("# nothing\n", "no keys"),
])
def test_bad_key_files_are_refused_without_echoing_keys(tmp_path: Path, text: str, message: str) -> None:
    keys = tmp_path / "keys"
    keys.write_text(text)
    with pytest.raises(KeyFileError) as err:
        ApiKeyStore.from_file(keys)
    assert message in str(err.value) and "k1" not in str(err.value)


def test_docs_list_every_setting() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "server.md").read_text(encoding="utf-8")
    for name in ServerSettings.model_fields:
        flag, env = f"`--{name.replace('_', '-')}", f"`M1_ASCEND_{name.upper()}"
        assert flag in docs and env in docs, f"docs/server.md does not document {name}"
