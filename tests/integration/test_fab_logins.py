"""The FAB admin account against a real PostgreSQL migrated by `airflow db migrate`."""

import subprocess
import sys
import threading

import pytest

from entrypoint import config, logins, migrations
from entrypoint.errors import WaitTimeout
from tests.support.servers import airflow_env

# Airflow runs in child processes only: the marker is not found from the imports.
pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def fab_db(postgres_server, tmp_path_factory):
    env = {**airflow_env(postgres_server, "airflow_fab", tmp_path_factory.mktemp("fabhome")),
           "AIRFLOW__CORE__AUTH_MANAGER": logins.FAB_AUTH_MANAGER}
    migrations.run_migrations(config.load({"AIRFLOW_ECS_WAIT_TIMEOUT": "60"}), env)
    return env


def sync(env, password, username="admin", wait="30"):
    settings = config.load({"AIRFLOW_ECS_ADMIN_USERNAME": username,
                            "AIRFLOW_ECS_WAIT_TIMEOUT": wait})
    return logins.sync_admin(settings, {**env, "AIRFLOW_ECS_ADMIN_PASSWORD": password})


def test_migrate_creates_fab_tables_at_their_head(fab_db, postgres_server):
    current = postgres_server.psql(
        f"SELECT version_num FROM {migrations.FAB_VERSION_TABLE}", database="airflow_fab")
    assert {current} == set(migrations.fab_revision_graph()[1])


def test_admin_is_created_once_then_its_password_follows_the_setting(fab_db, postgres_server):
    assert "created the admin account 'admin'" in sync(fab_db, "first-pw")
    assert sync(fab_db, "first-pw").endswith("nothing to change")
    assert sync(fab_db, "second-pw").endswith("set its password")
    # The stored hash now matches the new password: nothing left to change.
    assert sync(fab_db, "second-pw").endswith("nothing to change")
    roles = postgres_server.psql(
        "SELECT string_agg(r.name, ',') FROM ab_user u JOIN ab_user_role ur ON ur.user_id = u.id "
        "JOIN ab_role r ON r.id = ur.role_id WHERE u.username = 'admin'", database="airflow_fab")
    assert roles == "Admin"
    hashes = postgres_server.psql("SELECT password FROM ab_user WHERE username = 'admin'",
                                  database="airflow_fab")
    assert "second-pw" not in hashes and hashes


def test_two_webservers_at_once_create_one_account(fab_db, postgres_server):
    results: list = []

    def one() -> None:
        try:
            results.append(sync(fab_db, "twin-pw", username="twin"))
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(isinstance(r, str) for r in results) and len(results) == 2, results
    assert sum("created" in r for r in results) == 1, results
    count = postgres_server.psql("SELECT count(*) FROM ab_user WHERE username = 'twin'",
                                 database="airflow_fab")
    assert count == "1"


def test_a_held_lock_fails_within_the_wait_timeout(fab_db, postgres_server):
    from entrypoint.programs import fab_admin

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, sqlalchemy as sa\n"
         f"e = sa.create_engine({fab_db['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']!r})\n"
         "c = e.connect()\n"
         f"c.execute(sa.text('SELECT pg_advisory_lock({fab_admin.ADMIN_LOCK})')); c.commit()\n"
         "print('held', flush=True); time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WaitTimeout, match="held the admin account's lock for longer than "
                                              "AIRFLOW_ECS_WAIT_TIMEOUT=2s"):
            sync(fab_db, "pw-never-written", username="late", wait="2")
    finally:
        holder.kill()
        holder.wait()
    assert postgres_server.psql("SELECT count(*) FROM ab_user WHERE username = 'late'",
                                database="airflow_fab") == "0"


def test_the_webserver_waits_for_fabs_tables(fab_db, postgres_server):
    from entrypoint import waits

    waits.probe_fab_schema(fab_db["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres_server.create_database("airflow_no_fab")
    with pytest.raises(waits.NotReady, match="FAB's tables at no revision"):
        waits.probe_fab_schema(postgres_server.url(database="airflow_no_fab"))


def test_an_unknown_role_in_the_ldap_mapping_is_refused_naming_the_variable(fab_db):
    from entrypoint.errors import ConfigError

    ldap = {"AIRFLOW_ECS_LDAP_URI": "ldap://127.0.0.1:1", "AIRFLOW_ECS_LDAP_BIND_USER": "cn=r",
            "AIRFLOW_ECS_LDAP_SEARCH_BASE": "dc=example,dc=com",
            "AIRFLOW_ECS_LDAP_ROLES_MAPPING": '{"cn=ops,dc=example,dc=com": ["Op", "Opps"]}'}
    settings = config.load({**ldap, "AIRFLOW_ECS_WAIT_TIMEOUT": "30"})
    with pytest.raises(ConfigError) as caught:
        logins.sync_admin(settings, fab_db)
    message = str(caught.value)
    assert "AIRFLOW_ECS_LDAP_ROLES_MAPPING" in message and "unknown roles: Opps" in message
    assert "Viewer" in message  # the roles that do exist are listed
    good = config.load({**ldap, "AIRFLOW_ECS_LDAP_ROLES_MAPPING":
                        '{"cn=ops,dc=example,dc=com": ["Op"]}', "AIRFLOW_ECS_LDAP_DEFAULT_ROLE":
                        "Viewer"})
    assert logins.sync_admin(good, fab_db) == "the roles the login settings name exist: Op, Viewer"


def roles_of(postgres_server, username: str) -> str:
    return postgres_server.psql(
        "SELECT coalesce(string_agg(r.name, ',' ORDER BY r.name), '') FROM ab_user u "
        "JOIN ab_user_role ur ON ur.user_id = u.id JOIN ab_role r ON r.id = ur.role_id "
        f"WHERE u.username = '{username}'", database="airflow_fab")


def test_the_service_account_follows_its_settings_role_and_password(fab_db, postgres_server):
    def service(password: str, role: str = "Viewer") -> str:
        settings = config.load({"AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME": "ci-bot",
                                "AIRFLOW_ECS_SERVICE_ACCOUNT_ROLE": role,
                                "AIRFLOW_ECS_WAIT_TIMEOUT": "30"})
        return logins.sync_admin(settings, {**fab_db,
                                            "AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD": password})

    assert service("bot-pw") == "created the service account 'ci-bot' with the Viewer role"
    assert roles_of(postgres_server, "ci-bot") == "Viewer"
    assert service("bot-pw").endswith("nothing to change")
    assert service("bot-pw-2").endswith("set its password")
    # A role given in the UI is taken away: the account has the role of its settings alone.
    postgres_server.psql(
        "INSERT INTO ab_user_role (id, user_id, role_id) SELECT nextval('ab_user_role_id_seq'), "
        "u.id, r.id FROM ab_user u, ab_role r WHERE u.username = 'ci-bot' AND r.name = 'Admin'",
        database="airflow_fab")
    assert roles_of(postgres_server, "ci-bot") == "Admin,Viewer"
    assert service("bot-pw-2").endswith("gave it the Viewer role alone")
    assert roles_of(postgres_server, "ci-bot") == "Viewer"
    assert service("bot-pw-2", role="Op").endswith("gave it the Op role alone")
    assert roles_of(postgres_server, "ci-bot") == "Op"
    hashes = postgres_server.psql("SELECT password FROM ab_user WHERE username = 'ci-bot'",
                                  database="airflow_fab")
    assert "bot-pw" not in hashes and hashes


def test_an_unknown_service_account_role_is_refused_naming_the_variable(fab_db):
    from entrypoint.errors import ConfigError

    settings = config.load({"AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME": "ci-bot-2",
                            "AIRFLOW_ECS_SERVICE_ACCOUNT_ROLE": "Robot",
                            "AIRFLOW_ECS_WAIT_TIMEOUT": "30"})
    with pytest.raises(ConfigError) as caught:
        logins.sync_admin(settings, {**fab_db, "AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD": "pw"})
    message = str(caught.value)
    assert "AIRFLOW_ECS_SERVICE_ACCOUNT_ROLE" in message and "unknown roles: Robot" in message


def test_an_unknown_role_in_the_oidc_mapping_is_refused_naming_the_variable(fab_db):
    from entrypoint.errors import ConfigError

    oidc = {"AIRFLOW_ECS_OIDC_ISSUER": "https://login.example.com",
            "AIRFLOW_ECS_OIDC_CLIENT_ID": "airflow", "AIRFLOW_ECS_WAIT_TIMEOUT": "30"}
    settings = config.load({**oidc, "AIRFLOW_ECS_OIDC_ROLES_MAPPING": '{"ops": ["Opps"]}'})
    with pytest.raises(ConfigError) as caught:
        logins.sync_admin(settings, fab_db)
    message = str(caught.value)
    assert "AIRFLOW_ECS_OIDC_ROLES_MAPPING or AIRFLOW_ECS_OIDC_DEFAULT_ROLE" in message
    assert "unknown roles: Opps" in message
    good = config.load({**oidc, "AIRFLOW_ECS_OIDC_ROLES_MAPPING": '{"ops": ["Op"]}'})
    assert logins.sync_admin(good, fab_db) == "the roles the login settings name exist: Op"
