from __future__ import annotations

import pytest

from config.settings import CommonSettings, GatewaySettings, load

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_point_at_loopback() -> None:
    settings = CommonSettings()
    assert settings.kafka_brokers == "127.0.0.1:9092"
    assert "@127.0.0.1:5432/" in settings.database_url
    assert settings.redis_url.startswith("redis://127.0.0.1:6379")


def test_prefix_names_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_PREFIX", "staging.")
    assert CommonSettings().topic("message.send") == "staging.message.send"


def test_missing_secret_stops_with_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        load(GatewaySettings)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "JWT_SECRET" in err


def test_malformed_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", "not a broker list")
    monkeypatch.setenv("TOPIC_PARTITIONS", "many")
    with pytest.raises(SystemExit):
        load(CommonSettings)
    err = capsys.readouterr().err
    assert "KAFKA_BROKERS" in err and "TOPIC_PARTITIONS" in err


def test_short_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
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
