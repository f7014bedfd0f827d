"""LDAP logins through the webserver image: Debian's slapd on 127.0.0.1 holds two users in
two groups (and one in none); the webserver, on the host's network so that it reaches
slapd and the test's PostgreSQL on 127.0.0.1, maps each group to an Airflow role."""

from __future__ import annotations

import base64
import json
import os
import secrets

import pytest

from tests.images.test_fab_login import HARDENED, call, free_port, wait_for_webserver
from tests.support.images import docker, image, running
from tests.support.servers import LDAP_PEOPLE, LDAP_READER, start_ldap


@pytest.fixture(scope="module")
def directory():
    server = start_ldap()
    try:
        alice = server.add_user("alice", "alice-pw")
        bob = server.add_user("bob", "bob-pw")
        server.add_user("carol", "carol-pw")
        ops = server.add_group("airflow-ops", [alice])
        viewers = server.add_group("airflow-viewers", [bob])
        yield server, ops, viewers
    finally:
        server.close()


def roles_of(postgres_server, database: str, username: str) -> str:
    return postgres_server.psql(
        "SELECT coalesce(string_agg(r.name, ',' ORDER BY r.name), '') FROM ab_user u "
        "JOIN ab_user_role ur ON ur.user_id = u.id JOIN ab_role r ON r.id = ur.role_id "
        f"WHERE u.username = '{username}'", database=database)


def test_ldap_users_get_their_groups_roles_and_a_viewer_cannot_trigger(
        directory, postgres_server, tmp_path):
    ldap, ops, viewers = directory
    database = "airflow_ldap_image"
    postgres_server.create_database(database)
    admin_password = secrets.token_urlsafe(18)
    port = free_port()
    env_file = tmp_path / "airflow.env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_server.url(database=database),
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW_ECS_API_PORT": str(port),
        "AIRFLOW_ECS_ADMIN_PASSWORD": admin_password,
        "AIRFLOW_ECS_CHECK_FINGERPRINTS": "false",
        "AIRFLOW_ECS_WAIT_TIMEOUT": "120",
        "AIRFLOW_ECS_LDAP_URI": ldap.url,
        "AIRFLOW_ECS_LDAP_BIND_USER": LDAP_READER,
        "AIRFLOW_ECS_LDAP_BIND_PASSWORD": ldap.reader_password,
        "AIRFLOW_ECS_LDAP_SEARCH_BASE": LDAP_PEOPLE,
        "AIRFLOW_ECS_LDAP_USER_FILTER": "(objectClass=inetOrgPerson)",
        "AIRFLOW_ECS_LDAP_ROLES_MAPPING": json.dumps({ops: ["Op"], viewers: ["Viewer"]}),
    }.items()) + "\n")
    host = ("--network", "host", "--env-file", str(env_file), *HARDENED)
    for command in (("run", "migrate"), ("airflow", "dags", "reserialize")):
        result = docker("run", "--rm", *host, image("base"), *command, check=False,
                        timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    with running(*host, image("webserver")) as webserver:
        url = f"http://127.0.0.1:{port}"
        wait_for_webserver(url, webserver)

        def token(username: str, password: str) -> tuple[int, str]:
            code, body = call("POST", url + "/auth/token",
                              {"username": username, "password": password})
            return code, body.get("access_token", "")

        code, alice = token("alice", "alice-pw")
        assert code == 201 and alice, code
        code, bob = token("bob", "bob-pw")
        assert code == 201 and bob, code
        # Registered at the first login with their group's role.
        assert roles_of(postgres_server, database, "alice") == "Op"
        assert roles_of(postgres_server, database, "bob") == "Viewer"

        assert token("alice", "bob-pw") == (401, "")
        assert token("nobody", "alice-pw") == (401, "")
        # In no mapped group, and no AIRFLOW_ECS_LDAP_DEFAULT_ROLE: refused.
        assert token("carol", "carol-pw") == (401, "")
        # The admin account still logs in from the database.
        assert token("admin", admin_password)[0] == 201

        trigger = "/api/v2/dags/example_fanout/dagRuns"
        code, body = call("POST", url + trigger, {"logical_date": None}, token=bob)
        assert code == 403, (code, body)
        code, dags = call("GET", url + "/api/v2/dags", token=bob)
        assert code == 200 and "example_fanout" in {d["dag_id"] for d in dags["dags"]}, dags
        code, body = call("POST", url + trigger, {"logical_date": None}, token=alice)
        assert code == 200 and body.get("dag_id") == "example_fanout", (code, body)

        logs = docker("logs", webserver)
        output = logs.stdout + logs.stderr
        assert "the LDAP server (AIRFLOW_ECS_LDAP_URI)" in output, output[-3000:]
        for secret in (ldap.reader_password, admin_password, "alice-pw", "bob-pw"):
            assert secret not in output
