"""The webserver's wait for the OIDC provider's discovery document, against the test
provider (tests.support.oidc_provider) on 127.0.0.1."""

import time

import pytest

from entrypoint import config, waits
from entrypoint.errors import WaitTimeout
from tests.support.oidc_provider import Client, OidcProvider
from tests.support.servers import free_port

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
ENV = {"AIRFLOW__CORE__AUTH_MANAGER": FAB, "AIRFLOW_ECS_OIDC_CLIENT_SECRET": "client-secret"}


@pytest.fixture(scope="module")
def provider():
    server = OidcProvider(Client("airflow", "client-secret", ["http://127.0.0.1/cb"]), []).start()
    yield server
    server.stop()


def oidc_settings(issuer: str, timeout: str = "20") -> config.Settings:
    return config.load({
        "AIRFLOW_ECS_WAIT_TIMEOUT": timeout,
        "AIRFLOW_ECS_OIDC_ISSUER": issuer,
        "AIRFLOW_ECS_OIDC_CLIENT_ID": "airflow",
        "AIRFLOW_ECS_OIDC_DEFAULT_ROLE": "Viewer",
    })


def test_a_provider_serving_its_discovery_document_passes(provider):
    waits.wait_for_dependencies("webserver", oidc_settings(provider.url), ENV)


def test_an_issuer_the_document_does_not_name_fails_at_once(provider):
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        waits.wait_for_dependencies("webserver", oidc_settings(provider.url + "/"), ENV)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "AIRFLOW_ECS_OIDC_ISSUER" in message and "refused" in message
    assert "client-secret" not in message


def test_a_url_without_a_discovery_document_fails_at_once(provider):
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="HTTP 404: no discovery document"):
        waits.wait_for_dependencies("webserver", oidc_settings(provider.url + "/nothing"), ENV)
    assert time.monotonic() - started < 10


def test_an_unreachable_provider_fails_within_the_deadline_naming_the_variable():
    issuer = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        waits.wait_for_dependencies("webserver", oidc_settings(issuer, timeout="4"), ENV)
    assert time.monotonic() - started < 4 + 3
    message = str(caught.value)
    assert "AIRFLOW_ECS_OIDC_ISSUER" in message and issuer in message
    assert "AIRFLOW_ECS_WAIT_TIMEOUT=4" in message


def test_a_provider_that_never_answers_is_given_up_at_the_deadline():
    import socket

    # Accepts the connection (the kernel's backlog) and never says a word.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        issuer = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(WaitTimeout, match="AIRFLOW_ECS_OIDC_ISSUER"):
            waits.wait_for_dependencies("webserver", oidc_settings(issuer, timeout="4"), ENV)
        assert time.monotonic() - started < 4 + 3


def test_other_roles_do_not_wait_for_the_provider():
    issuer = f"http://127.0.0.1:{free_port()}"
    waits.wait_for_dependencies("scheduler", oidc_settings(issuer, timeout="2"), ENV)
