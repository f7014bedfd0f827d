"""OIDC single sign-on through the webserver image, in a real headless browser.

The test provider (tests.support.oidc_provider, Authlib's server side) runs on
127.0.0.1 with two users in two groups and one in neither. The webserver runs on
the host's network, like the LDAP image test's, so the issuer URL the browser is
sent to and the one the webserver fetches tokens and keys from are the same
http://127.0.0.1:PORT. Debian's Chromium, driven by Playwright, signs in through
the provider's form as each user.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from contextlib import contextmanager

import pytest
from playwright.sync_api import sync_playwright

from tests.images.test_fab_login import HARDENED, call, free_port, wait_for_webserver
from tests.images.test_ldap_login import roles_of
from tests.support.images import docker, image, running
from tests.support.oidc_provider import Client, OidcProvider, User
from tests.support.round_robin import RoundRobinProxy

CHROMIUM = "/usr/bin/chromium"
TRIGGER = "/api/v2/dags/example_fanout/dagRuns"
CLIENT_SECRET = secrets.token_urlsafe(24)
BOT_PASSWORD = secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def provider():
    server = OidcProvider(Client("airflow", CLIENT_SECRET, []), [
        User("sub-alice", "alice", "alice-pw", "alice@example.com", ["airflow-ops"]),
        User("sub-bob", "bob", "bob-pw", "bob@example.com", ["airflow-viewers"]),
        User("sub-carol", "carol", "carol-pw", "carol@example.com", ["accounting"]),
    ]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def webserver_env(postgres_server, database: str, provider: OidcProvider, port: int,
                  shared: dict, bot_role: str = "User") -> dict:
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_server.url(database=database),
        **shared,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW_ECS_API_PORT": str(port),
        "AIRFLOW_ECS_CHECK_FINGERPRINTS": "false",
        "AIRFLOW_ECS_WAIT_TIMEOUT": "120",
        "AIRFLOW_ECS_OIDC_ISSUER": provider.url,
        "AIRFLOW_ECS_OIDC_CLIENT_ID": "airflow",
        "AIRFLOW_ECS_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "AIRFLOW_ECS_OIDC_SCOPES": "openid email profile groups",
        "AIRFLOW_ECS_OIDC_ROLES_MAPPING": json.dumps({"airflow-ops": ["Op"],
                                                      "airflow-viewers": ["Viewer"]}),
        "AIRFLOW_ECS_SERVICE_ACCOUNT_USERNAME": "ci-bot",
        "AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD": BOT_PASSWORD,
        "AIRFLOW_ECS_SERVICE_ACCOUNT_ROLE": bot_role,
    }


def shared_keys() -> dict:
    """The keys every webserver task of one deployment shares."""
    return {
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
    }


def env_args(tmp_path, name: str, env: dict) -> tuple[str, ...]:
    env_file = tmp_path / f"{name}.env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in env.items()) + "\n")
    return ("--network", "host", "--env-file", str(env_file), *HARDENED)


def migrate(host: tuple[str, ...]) -> None:
    for command in (("run", "migrate"), ("airflow", "dags", "reserialize")):
        result = docker("run", "--rm", "--name", f"images-oidc-{secrets.token_hex(5)}", *host,
                        image("base"), *command, check=False,
                        timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@contextmanager
def signed_in(browser, url: str, username: str, password: str):
    """A browser context that went through the login: the webserver's login page, its
    OIDC button, the provider's form. Yields (context, page)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_url("**/auth/login/**")
        page.click("#btn-signin-oidc")
        page.wait_for_selector("#sign-in")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#sign-in")
        page.wait_for_load_state("networkidle")
        yield context, page
    finally:
        context.close()


def token_of(context) -> str:
    """The API token the webserver set as the browser's _token cookie at login."""
    return next((c["value"] for c in context.cookies() if c["name"] == "_token"), "")


def jti_of(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def trigger_button(page, url: str):
    page.goto(url + "/dags/example_fanout")
    page.get_by_text("example_fanout").first.wait_for()
    page.wait_for_load_state("networkidle")
    return page.get_by_role("button", name="Trigger")


def test_oidc_users_sign_in_in_a_browser_with_their_groups_roles(
        provider, browser, postgres_server, tmp_path):
    database = "airflow_oidc_image"
    postgres_server.create_database(database)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider.client.redirect_uris[:] = [f"{url}/auth/oauth-authorized/oidc"]
    host = env_args(tmp_path, "webserver",
                    webserver_env(postgres_server, database, provider, port, shared_keys()))
    migrate(host)

    with running(*host, image("webserver"), prefix="images-oidc") as webserver:
        wait_for_webserver(url, webserver)

        with signed_in(browser, url, "alice", "alice-pw") as (context, page):
            assert page.url.startswith(url) and "/auth/login" not in page.url, page.url
            alice = token_of(context)
            assert alice
            # Registered at the first login with their group's role.
            assert roles_of(postgres_server, database, "alice") == "Op"
            # The REST API with the browser's own session (its cookie).
            answer = context.request.post(url + TRIGGER, data={"logical_date": None})
            assert answer.status == 200, answer.text()
            assert answer.json()["dag_id"] == "example_fanout"
            # The UI shows its trigger button once it has the DAG and the user's rights.
            trigger_button(page, url).wait_for(state="visible", timeout=120_000)

            assert call("GET", url + "/api/v2/dags", token=alice)[0] == 200

            # Logout: the UI's logout, as its menu does it.
            page.goto(url + "/api/v2/auth/logout")
            page.wait_for_load_state("networkidle")
            assert "/auth/login" in page.url, page.url
            assert token_of(context) == ""
            # The token the browser held is revoked in the database, not only forgotten
            # by the browser: Airflow answers a revoked token 403 "Invalid JWT token".
            assert call("GET", url + "/api/v2/dags", token=alice) == \
                (403, {"detail": "Invalid JWT token"})
            assert postgres_server.psql(
                f"SELECT count(*) FROM revoked_token WHERE jti = '{jti_of(alice)}'",
                database=database) == "1"
            # The next visit goes through the provider again.
            page.goto(url + "/")
            page.wait_for_url("**/auth/login/**")

        with signed_in(browser, url, "bob", "bob-pw") as (context, page):
            bob = token_of(context)
            assert bob
            assert roles_of(postgres_server, database, "bob") == "Viewer"
            answer = context.request.post(url + TRIGGER, data={"logical_date": None})
            assert answer.status == 403, answer.text()
            assert call("POST", url + TRIGGER, {"logical_date": None}, token=bob)[0] == 403
            code, dags = call("GET", url + "/api/v2/dags", token=bob)
            assert code == 200 and "example_fanout" in {d["dag_id"] for d in dags["dags"]}
            # Airflow's UI shows its trigger button to a Viewer too (it does not hide what
            # the user's role forbids); the trigger the UI sends is refused by the API.
            trigger_button(page, url).wait_for(state="visible", timeout=120_000)
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            dialog.wait_for(state="visible")
            with page.expect_response(lambda r: r.url.endswith(TRIGGER)
                                      and r.request.method == "POST") as sent:
                dialog.get_by_role("button", name="Trigger").last.click()
            assert sent.value.status == 403, sent.value.text()

        # In no mapped group, and no AIRFLOW_ECS_OIDC_DEFAULT_ROLE: refused, no account made.
        with signed_in(browser, url, "carol", "carol-pw") as (context, page):
            assert "/auth/login" in page.url, page.url
            assert token_of(context) == ""
        assert roles_of(postgres_server, database, "carol") == ""
        assert postgres_server.psql("SELECT count(*) FROM ab_user WHERE username = 'carol'",
                                    database=database) == "0"
        assert provider.logins == ["alice", "bob", "carol"]

        # The service account: a token from FAB's token endpoint, as a CI job gets one.
        code, body = call("POST", url + "/auth/token",
                          {"username": "ci-bot", "password": BOT_PASSWORD})
        assert code == 201 and body.get("access_token"), (code, body)
        assert roles_of(postgres_server, database, "ci-bot") == "User"
        code, run = call("POST", url + TRIGGER, {"logical_date": None},
                         token=body["access_token"])
        assert code == 200 and run["dag_id"] == "example_fanout", (code, run)
        assert call("POST", url + "/auth/token",
                    {"username": "ci-bot", "password": BOT_PASSWORD + "x"})[0] == 401

        logs = docker("logs", webserver)
        output = logs.stdout + logs.stderr
        assert "the OIDC provider's discovery document (AIRFLOW_ECS_OIDC_ISSUER)" in output, \
            output[-3000:]
        for secret in (CLIENT_SECRET, BOT_PASSWORD, "alice-pw", "bob-pw"):
            assert secret not in output


def test_a_login_through_a_proxy_holds_on_both_webservers_and_logout_ends_it_on_both(
        provider, browser, postgres_server, tmp_path):
    database = "airflow_oidc_pair"
    postgres_server.create_database(database)
    keys = shared_keys()  # one deployment's: both tasks hold the same
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    proxy = RoundRobinProxy([("127.0.0.1", port) for port in ports])
    provider.client.redirect_uris[:] = [f"{proxy.url}/auth/oauth-authorized/oidc"]
    # Here the service account may only read.
    hosts = [env_args(tmp_path, f"webserver-{i}",
                      webserver_env(postgres_server, database, provider, port, keys, "Viewer"))
             for i, port in enumerate(ports)]
    migrate(hosts[0])

    with running(*hosts[0], image("webserver"), prefix="images-oidc") as first, \
            running(*hosts[1], image("webserver"), prefix="images-oidc") as second:
        wait_for_webserver(urls[0], first)
        wait_for_webserver(urls[1], second)
        proxy.start()
        try:
            with signed_in(browser, proxy.url, "alice", "alice-pw") as (context, page):
                assert page.url.startswith(proxy.url) and "/auth/login" not in page.url, \
                    page.url
                # The login's requests (its redirects, the provider's callback) were
                # answered by both webservers in turn.
                assert set(proxy.served) == {0, 1}, proxy.served
                token = token_of(context)
                for url in urls:
                    # The browser's session, on each webserver directly (a cookie is not
                    # bound to a port): the API and the UI.
                    assert context.request.get(url + "/api/v2/dags").status == 200, url
                    page.goto(url + "/dags/example_fanout")
                    page.get_by_text("example_fanout").first.wait_for()
                    assert "/auth/login" not in page.url, page.url

                page.goto(proxy.url + "/")
                page.wait_for_load_state("networkidle")
                try:
                    page.goto(proxy.url + "/api/v2/auth/logout")
                except Exception as exc:
                    raise AssertionError(f"{exc}\n{proxy.answers[-12:]}") from None
                page.wait_for_load_state("networkidle")
                assert "/auth/login" in page.url, page.url
                for url in urls:
                    # Revoked in the database both read: refused by either webserver.
                    assert call("GET", url + "/api/v2/dags", token=token) == \
                        (403, {"detail": "Invalid JWT token"}), url
                    page.goto(url + "/")
                    page.wait_for_url("**/auth/login/**")

            # The service account with the Viewer role: a token, the DAGs read, no trigger.
            code, body = call("POST", proxy.url + "/auth/token",
                              {"username": "ci-bot", "password": BOT_PASSWORD})
            assert code == 201 and body.get("access_token"), (code, body)
            bot = body["access_token"]
            assert roles_of(postgres_server, database, "ci-bot") == "Viewer"
            assert call("GET", proxy.url + "/api/v2/dags", token=bot)[0] == 200
            assert call("POST", proxy.url + TRIGGER, {"logical_date": None}, token=bot)[0] == 403
        finally:
            proxy.stop()
