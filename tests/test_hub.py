"""The one hub rule (headspex.hub): which offline variables, which values, which address."""

from __future__ import annotations

import socket
import time

import pytest

import headspex.hub as hub
from headspex.errors import HeadspexError

VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES + ("HF_ENDPOINT",):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("name", VARIABLES)
@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", "on", " 1 "])
def test_each_variable_with_a_true_value_means_offline(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    assert hub.hub_offline_by_env() is True


@pytest.mark.parametrize("name", VARIABLES)
@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "off", "2", "offline"])
def test_other_values_do_not(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    assert hub.hub_offline_by_env() is False


def test_unset_is_online_and_models_share_the_rule(clean_env: pytest.MonkeyPatch) -> None:
    from headspex.models import _hub_reachable

    assert hub.hub_offline_by_env() is False
    # models used to read HF_HUB_OFFLINE only (and "no" as offline); now the same rule as tasks.
    clean_env.setenv("TRANSFORMERS_OFFLINE", "1")
    start = time.perf_counter()
    assert _hub_reachable() is False and hub.hub_reachable() is False
    assert time.perf_counter() - start < 0.5  # no connection attempted


def test_offline_by_env_never_connects(clean_env: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("hub_reachable opened a connection although an offline variable is set")

    clean_env.setattr(socket, "create_connection", refuse)
    clean_env.setenv("HF_DATASETS_OFFLINE", "yes")
    assert hub.hub_reachable() is False


def test_address_follows_hf_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    assert hub.hub_address() == ("huggingface.co", 443)
    clean_env.setenv("HF_ENDPOINT", "http://mirror.example:8080/")
    assert hub.hub_address() == ("mirror.example", 8080)
    clean_env.setenv("HF_ENDPOINT", "http://mirror.example")
    assert hub.hub_address() == ("mirror.example", 80)
    clean_env.setenv("HF_ENDPOINT", "https://mirror.example:99999")
    with pytest.raises(HeadspexError, match="HF_ENDPOINT"):
        hub.hub_address()


def test_reachable_connects_to_the_endpoint_with_the_timeout(clean_env: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []

    class Connection:
        def __enter__(self) -> "Connection":
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def connect(address: object, timeout: object = None) -> Connection:
        calls.append((address, timeout))
        return Connection()

    clean_env.setattr(socket, "create_connection", connect)
    clean_env.setenv("HF_ENDPOINT", "https://mirror.example")
    assert hub.hub_reachable(timeout_s=0.25) is True
    assert calls == [(("mirror.example", 443), 0.25)]

    def fail(address: object, timeout: object = None) -> None:
        raise OSError("no route")

    clean_env.setattr(socket, "create_connection", fail)
    assert hub.hub_reachable() is False
