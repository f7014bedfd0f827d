"""The webserver's wait for the LDAP server, against Debian's slapd on 127.0.0.1."""

import time

import pytest

from entrypoint import config, waits
from entrypoint.errors import WaitTimeout
from tests.support.servers import LDAP_PEOPLE, LDAP_READER, free_port, start_ldap

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


@pytest.fixture(scope="module")
def ldap_server():
    server = start_ldap()
    yield server
    server.close()


def ldap_settings(uri: str, timeout: str = "20") -> config.Settings:
    return config.load({
        "AIRFLOW_ECS_WAIT_TIMEOUT": timeout,
        "AIRFLOW_ECS_LDAP_URI": uri,
        "AIRFLOW_ECS_LDAP_BIND_USER": LDAP_READER,
        "AIRFLOW_ECS_LDAP_SEARCH_BASE": LDAP_PEOPLE,
        "AIRFLOW_ECS_LDAP_DEFAULT_ROLE": "Viewer",
    })


def env(password: str) -> dict:
    return {"AIRFLOW__CORE__AUTH_MANAGER": FAB, "AIRFLOW_ECS_LDAP_BIND_PASSWORD": password}


def test_reachable_server_and_right_bind_password_pass(ldap_server):
    waits.wait_for_dependencies("webserver", ldap_settings(ldap_server.url),
                                env(ldap_server.reader_password))


def test_wrong_bind_password_fails_at_once_naming_the_variables(ldap_server):
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        waits.wait_for_dependencies("webserver", ldap_settings(ldap_server.url),
                                    env("not-the-password"))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "AIRFLOW_ECS_LDAP_BIND_PASSWORD" in message and "refused" in message
    assert "not-the-password" not in message


def test_unreachable_server_fails_within_the_deadline_naming_the_uri():
    uri = f"ldap://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        waits.wait_for_dependencies("webserver", ldap_settings(uri, timeout="4"),
                                    env("pw"))
    assert time.monotonic() - started < 4 + 3
    message = str(caught.value)
    assert "AIRFLOW_ECS_LDAP_URI" in message and uri in message
    assert "AIRFLOW_ECS_WAIT_TIMEOUT=4" in message


def test_a_server_that_never_answers_is_given_up_at_the_deadline():
    import socket

    # Accepts the connection (the kernel's backlog) and never says a word.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(WaitTimeout, match="AIRFLOW_ECS_LDAP_URI"):
            waits.wait_for_dependencies("webserver", ldap_settings(uri, timeout="4"), env("pw"))
        assert time.monotonic() - started < 4 + 3


def test_other_roles_do_not_wait_for_ldap():
    uri = f"ldap://127.0.0.1:{free_port()}"
    waits.wait_for_dependencies("scheduler", ldap_settings(uri, timeout="2"), env("pw"))
