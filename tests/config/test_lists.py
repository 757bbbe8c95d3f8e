"""List settings are lists: each takes the comma-separated value deployed manifests set and the
JSON list pydantic-settings knows, from the environment, a `.env` file or an assignment."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gateway.app import create_app
from gateway.config import Settings, env_vars

LISTS = {
    "GATEWAY_SERVER__API_KEYS": ("server", "api_keys"),
    "GATEWAY_SERVER__CORS_ORIGINS": ("server", "cors_origins"),
    "GATEWAY_SERVER__OPEN_PATHS": ("server", "open_paths"),
    "GATEWAY_MODELS__PRELOAD": ("models", "preload"),
    "GATEWAY_MODELS__PINNED": ("models", "pinned"),
    "GATEWAY_WHISPER__LANGUAGES": ("whisper", "languages"),
}


def _read(env: str, value: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv(env, value)
    section, name = LISTS[env]
    got: list[str] = getattr(getattr(Settings(_env_file=None), section), name)
    return got


@pytest.mark.parametrize("env", LISTS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("en,de", ["en", "de"]),  # the comma form of k8s/ and docker/
        ('["en", "de"]', ["en", "de"]),  # pydantic-settings' JSON form
        ("en", ["en"]),
        ("", []),
        ("  ", []),
        (" en , de ,, ", ["en", "de"]),
        ('  [" en", "de ", ""]  ', ["en", "de"]),
        ("[]", []),
    ],
)
def test_a_list_setting_reads_the_comma_and_the_json_form(
    env: str, value: str, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _read(env, value, monkeypatch) == expected


def test_the_deployed_preload_value_and_a_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _read("GATEWAY_MODELS__PRELOAD", "whisper-base,kokoro", monkeypatch) == [
        "whisper-base",
        "kokoro",
    ]
    monkeypatch.delenv("GATEWAY_MODELS__PRELOAD")
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        'GATEWAY_MODELS__PINNED=kokoro, whisper-base\nGATEWAY_MODELS__PRELOAD=["kokoro"]\n'
    )
    settings = Settings(_env_file=dotenv)
    assert settings.models.pinned == ["kokoro", "whisper-base"]
    assert settings.models.preload == ["kokoro"]


@pytest.mark.parametrize(
    ("value", "message"), [('["en", "de"', "Expecting ','"), ("[1, 2]", "valid string")]
)
def test_a_broken_json_list_is_an_error_naming_the_setting(
    value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value that starts as JSON is never taken as one comma-separated item."""
    monkeypatch.setenv("GATEWAY_WHISPER__LANGUAGES", value)
    with pytest.raises(ValidationError, match=message) as raised:
        Settings(_env_file=None)
    assert raised.value.errors()[0]["loc"][:2] == ("whisper", "languages")


def test_each_code_of_a_list_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WHISPER__LANGUAGES", '["en", "xx"]')
    with pytest.raises(ValidationError, match="unknown language 'xx'"):
        Settings(_env_file=None)


def test_an_assigned_comma_form_is_decoded_as_a_list() -> None:
    settings = Settings(_env_file=None)
    settings.server.api_keys = "k1, k2"  # type: ignore[assignment]
    settings.models.preload = ""  # type: ignore[assignment]
    assert settings.server.api_keys == ["k1", "k2"] and settings.models.preload == []
    assert settings.api_keys() == ["k1", "k2"]


def test_the_settings_table_shows_lists_as_users_set_them() -> None:
    """The README's default column stays what it was when these settings were strings."""
    shown = {env: default for env, default, _ in env_vars()}
    assert shown["GATEWAY_SERVER__OPEN_PATHS"] == "/status,/realtime"
    for env in set(LISTS) - {"GATEWAY_SERVER__OPEN_PATHS"}:
        assert shown[env] == '""', env
    assert Settings(_env_file=None).server.open_paths == ["/status", "/realtime"]


def test_list_settings_reach_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys, open paths and CORS origins from their env vars guard and answer a real app."""
    monkeypatch.setenv("GATEWAY_SERVER__API_KEYS", '["k1", "k2"]')
    monkeypatch.setenv("GATEWAY_SERVER__OPEN_PATHS", " /docs/ , /openapi.json")
    monkeypatch.setenv("GATEWAY_SERVER__CORS_ORIGINS", "https://a.example,https://b.example")
    client = TestClient(create_app(Settings(_env_file=None)))
    assert client.get("/openapi.json").status_code == 200  # open: no key needed
    assert client.get("/v1/scheduler").status_code == 401
    for key, status in (("k1", 200), ("k2", 200), ('["k1", "k2"]', 401), ("k3", 401)):
        got = client.get("/v1/scheduler", headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == status, key
    preflight = client.options(
        "/v1/audio/speech",
        headers={"Origin": "https://b.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["access-control-allow-origin"] == "https://b.example"


@pytest.mark.slow  # a model load: 3.5 s under load
def test_preload_and_pinned_reach_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployed comma form preloads the models it names at start-up; the JSON form pins."""
    monkeypatch.setenv("GATEWAY_MODELS__PRELOAD", " kokoro, no-such-model")
    monkeypatch.setenv("GATEWAY_MODELS__PINNED", '["kokoro"]')
    with TestClient(create_app(Settings(_env_file=None))) as client:
        models = {m["model"]: m for m in client.get("/api/ps").json()["models"]}
    assert set(models) == {"kokoro"} and models["kokoro"]["pinned"] is True
