"""FAB's roles and admin account, checked and brought up to date by the webserver at start.

    python -m entrypoint.programs.fab_admin USERNAME LOCK_WAIT_SECONDS [ROLE...]
        [--service-account NAME ROLE]

The password comes from AIRFLOW_ECS_ADMIN_PASSWORD in the environment, never from
the arguments (a process's arguments are visible to every user of the host);
without it no account is touched. ROLEs are the roles the LDAP or OIDC settings name:
one that doesn't exist in FAB's tables ends the program with exit 4 naming it.

Idempotent: a missing account is created with the Admin role; an existing one
gets the configured password (when it no longer matches) and the Admin role
(when it lost it), so a changed password takes effect at the next start. An
account deactivated in the UI stays deactivated. Airflow's `users create`
would take the password as an argument and leaves an existing account as it is.

With --service-account, the service account NAME (password from
AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD) is brought up to date the same way, with ROLE
as its one role: a role added to it in the UI is taken away at the next start,
so that the account keeps the limited rights the settings give it.

Webserver tasks starting together take turns: on PostgreSQL under an advisory
lock of ours, waited for at most LOCK_WAIT_SECONDS (exit 3 past that). On a
new database the first one also creates FAB's roles (what the api-server does
at its own start), since the Admin role must exist to be given.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

ADMIN_LOCK = 0x41454341  # our PostgreSQL advisory lock key ("AECA"), beside MIGRATE_LOCK
LOCK_POLL = 0.5
# logins.EXIT_*: this module must not import the runtime.
EXIT_LOCK_TIMEOUT = 3
EXIT_UNKNOWN_ROLES = 4
PASSWORD_VAR = "AIRFLOW_ECS_ADMIN_PASSWORD"
SERVICE_PASSWORD_VAR = "AIRFLOW_ECS_SERVICE_ACCOUNT_PASSWORD"


def say(message: str) -> None:
    print(f"fab-admin: {message}", flush=True)


@contextlib.contextmanager
def one_at_a_time(engine: Any, lock_wait: float) -> Iterator[None]:
    if engine.dialect.name != "postgresql":
        yield  # other databases: one webserver task at a time is the operator's care
        return
    from sqlalchemy import text

    deadline = time.monotonic() + lock_wait
    with engine.connect() as connection:
        waited = False
        while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                     {"key": ADMIN_LOCK}).scalar():
            connection.commit()
            if time.monotonic() >= deadline:
                say(f"another webserver held the lock for more than {lock_wait:g}s")
                raise SystemExit(EXIT_LOCK_TIMEOUT)
            if not waited:
                say("another webserver is writing the admin account; waiting for it")
                waited = True
            time.sleep(LOCK_POLL)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADMIN_LOCK})
            connection.commit()


def ensure_roles(sm: Any, needed: list[str]) -> list[str]:
    """Create FAB's roles where one we need is missing; return the names still missing.

    sync_roles is what the api-server runs at its own start: the built-in roles and
    [fab] custom_roles. Run here, under the lock, when a role is missing (a new database,
    a custom role just configured), since the admin account needs the Admin role and the
    LDAP or OIDC mapping is refused if a role it names doesn't exist.
    """
    if any(sm.find_role(name) is None for name in needed):
        sm.sync_roles()
    return [name for name in needed if sm.find_role(name) is None]


def sync(appbuilder: Any, username: str, password: str, role_name: str | None = None,
         kind: str = "admin") -> str:
    """Create or update the account; say what was done.

    The admin account (role_name None) gets FAB's admin role beside any others; a
    service account gets role_name as its only role.
    """
    sm = appbuilder.sm
    only = role_name is not None
    role_name = role_name or sm.auth_role_admin
    role = sm.find_role(role_name)
    if role is None:
        raise RuntimeError(f"FAB's role {role_name!r} is missing after creating the roles")
    user = sm.find_user(username=username)
    if user is None:
        # The address must be unique and present; .invalid never routes (RFC 2606).
        sm.add_user(username, kind.capitalize(), username, f"{username}@airflow-ecs.invalid",
                    role, password)
        return f"created the {kind} account {username!r} with the {role_name} role"
    done = []
    if not sm.check_password(user.username, password):
        if not sm.reset_password(user.id, password):
            raise RuntimeError(f"FAB refused to set the password of {username!r}")
        done.append("set its password")
    held = {r.id for r in user.roles}
    if only and held != {role.id}:
        user.roles = [role]
        sm.update_user(user)
        done.append(f"gave it the {role_name} role alone")
    elif role.id not in held:
        user.roles = [*user.roles, role]
        sm.update_user(user)
        done.append(f"gave it the {role_name} role")
    if not user.active:
        done.append("left it deactivated, as it was set in the UI")
    return f"the {kind} account {username!r} exists; " + (", ".join(done) or "nothing to change")


def main(argv: list[str]) -> int:
    """argv: USERNAME LOCK_WAIT_SECONDS [ROLE...] [--service-account NAME ROLE]: the roles
    the login settings name, and the service account."""
    service: tuple[str, str] | None = None
    if "--service-account" in argv:
        at = argv.index("--service-account")
        service, argv = (argv[at + 1], argv[at + 2]), argv[:at] + argv[at + 3:]
    username, lock_wait, roles = argv[0], float(argv[1]), argv[2:]
    password = os.environ.get(PASSWORD_VAR, "")
    service_password = os.environ.get(SERVICE_PASSWORD_VAR, "")
    from airflow import settings
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    if settings.engine is None:
        settings.configure_orm()  # type: ignore[no-untyped-call]  # unannotated in Airflow
    with one_at_a_time(settings.engine, lock_wait), get_application_builder() as appbuilder:
        sm = appbuilder.sm
        needed = sorted({*roles, *([sm.auth_role_admin] if password else []),
                         *([service[1]] if service else [])})
        missing = ensure_roles(sm, needed)
        if missing:
            known = sorted(role.name for role in sm.get_all_roles())
            say(f"unknown roles: {', '.join(missing)}; the roles are: {', '.join(known)}")
            return EXIT_UNKNOWN_ROLES
        if password:
            say(sync(appbuilder, username, password))
        if service and service_password:
            say(sync(appbuilder, service[0], service_password, service[1], kind="service"))
        if roles:
            say(f"the roles the login settings name exist: {', '.join(sorted(set(roles)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
