from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import CommonSettings, GatewaySettings, load

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("clean_env")


SERVICES = {
    "DATABASE_URL": "postgresql://messenger:pw-0123456789abcdef@127.0.0.1:5432/messenger",
    "REDIS_URL": "redis://:pw-0123456789abcdef@127.0.0.1:6379/0",
    "KAFKA_PASSWORD": "pw-0123456789abcdef",
    "CHAT_ID_KEY": "chat-id-key-0123456789abcdefghij",
}
STRONG_SECRET = "0123456789abcdef" * 2


@pytest.fixture
def services_env(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SERVICES.items():
        monkeypatch.setenv(name, value)


def test_defaults_point_at_loopback(services_env: None) -> None:
    settings = CommonSettings()
    assert settings.kafka_brokers == "127.0.0.1:9092"
    assert settings.topic_prefix == ""


def test_service_urls_have_no_default_so_no_well_known_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load(CommonSettings)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "DATABASE_URL" in err and "REDIS_URL" in err


@pytest.mark.usefixtures("services_env")
@pytest.mark.parametrize(
    "secret",
    [
        "change-me-to-at-least-32-random-characters",  # the placeholder of .env.example
        "CHANGEME-please-0123456789abcdefghij",
        "x" * 64,
        "passwordpasswordpasswordpassword",
        "ab12" * 16,
    ],
)
def test_placeholder_or_guessable_secret_is_refused_with_one_line(
    secret: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", secret)
    with pytest.raises(SystemExit) as stop:
        load(GatewaySettings)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("configuration error: JWT_SECRET:"), err


def test_the_placeholder_of_env_example_is_refused(services_env: None) -> None:
    example = (ROOT / ".env.example").read_text()
    placeholder = next(line.split("=", 1)[1] for line in example.splitlines() if line.startswith("JWT_SECRET="))
    with pytest.raises(ValidationError, match="placeholder"):
        GatewaySettings(jwt_secret=placeholder)


@pytest.mark.usefixtures("services_env")
@pytest.mark.parametrize("secret", [STRONG_SECRET, "9f" * 8 + "e3a1c4b7d2" * 3, "Zq3-_kP8sL0aTn4wXc7RbV2mYe9hGu6J"])
def test_generated_secrets_pass(secret: str) -> None:
    assert GatewaySettings(jwt_secret=secret).jwt_secret == secret


def test_prefix_names_topics(services_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_PREFIX", "staging.")
    assert CommonSettings().topic("message.send") == "staging.message.send"


def test_missing_secret_stops_with_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        load(GatewaySettings)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "JWT_SECRET" in err


def test_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", "not a broker list")
    monkeypatch.setenv("TOPIC_PARTITIONS", "many")
    with pytest.raises(SystemExit):
        load(CommonSettings)
    err = capsys.readouterr().err
    assert "KAFKA_BROKERS" in err and "TOPIC_PARTITIONS" in err


def test_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JWT_SECRET", "short")
    with pytest.raises(SystemExit):
        load(GatewaySettings)
    assert "JWT_SECRET" in capsys.readouterr().err


def test_env_example_names_every_setting() -> None:
    from pathlib import Path

    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    named = {line.split("=", 1)[0].lower() for line in example.splitlines() if "=" in line and not line.startswith("#")}
    from config.settings import WorkerSettings

    assert set(GatewaySettings.model_fields) | set(WorkerSettings.model_fields) <= named
