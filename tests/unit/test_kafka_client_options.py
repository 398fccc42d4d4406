"""Every Kafka client logs in with the settings' credentials: aiokafka's through `client_options`,
Faust's through `broker_credentials`, and a process without a password does not start."""

from __future__ import annotations

from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from config.kafka import client_options
from config.settings import CommonSettings, load
from runtime.faust_app import broker_credentials

PASSWORD = "Zq3-_kP8sL0aTn4wXc7RbV2m"


def settings(**values: Any) -> CommonSettings:
    return CommonSettings(
        **{
            "database_url": "postgresql://u:pw-0123456789abcdef@db:5432/d",
            "redis_url": "redis://:pw-0123456789abcdef@r:6379/0",
            "kafka_brokers": "k1:9092,k2:9094",
            "kafka_password": PASSWORD,
            **values,
        }
    )


def test_client_options_log_in_with_sasl_plain_by_default() -> None:
    assert client_options(settings()) == {
        "bootstrap_servers": ["k1:9092", "k2:9094"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "messenger",
        "sasl_plain_password": PASSWORD,
    }


def test_client_options_follow_the_username_and_mechanism() -> None:
    options = client_options(settings(kafka_username="app", kafka_sasl_mechanism="SCRAM-SHA-512"))
    assert options["sasl_plain_username"] == "app"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_faust_clients_get_the_same_login_as_aiokafka_ones(mechanism: str) -> None:
    configured = settings(kafka_sasl_mechanism=mechanism)
    faust_auth = dict(credentials_to_aiokafka_auth(broker_credentials(configured)))
    assert faust_auth.pop("ssl_context") is None
    expected = client_options(configured)
    del expected["bootstrap_servers"]
    assert faust_auth == expected


def test_the_password_is_not_shown_by_the_settings() -> None:
    assert PASSWORD not in repr(settings())
    assert PASSWORD not in str(settings().model_dump())


@pytest.mark.usefixtures("clean_env")
def test_a_missing_password_stops_the_process_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        load(CommonSettings)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "KAFKA_PASSWORD" in err


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("password", ["short", "change-me-0123456789abcdef", "a1" * 12])
def test_a_weak_password_is_refused(
    password: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", password)
    with pytest.raises(SystemExit):
        load(CommonSettings)
    assert "KAFKA_PASSWORD" in capsys.readouterr().err
