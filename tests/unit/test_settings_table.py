"""Each AIRFLOW_ECS_* setting is declared once, in config.Settings, and everything else
reads that declaration: adding a setting is one entry there plus the code that uses it."""

import dataclasses
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint import config, defaults, running_env
from entrypoint.errors import ConfigError
from entrypoint.probe import health
from entrypoint.tools import reference

ROOT = Path(__file__).resolve().parents[2]
DUMMY = "AIRFLOW_ECS_DUMMY_RETRIES"


@pytest.fixture
def dummy(monkeypatch):
    """A new setting, added the way a real one is: one entry in the table."""

    @dataclasses.dataclass(frozen=True)
    class WithDummy(config.Settings):
        dummy_retries: int = config.integer(3, 0, 10, "Retries of the dummy feature.", "5")

    monkeypatch.setattr(config, "Settings", WithDummy)
    return WithDummy


def test_load_reads_a_new_setting_with_its_declared_default(dummy):
    assert config.load({}).dummy_retries == 3
    assert config.load({DUMMY: " 7 "}).dummy_retries == 7
    assert config.load({DUMMY: "8"}, only=("dummy_retries",)).dummy_retries == 8
    assert isinstance(config.load({}), dummy)
    with pytest.raises(KeyError, match="dummy_retry"):
        config.load({}, only=("dummy_retry",))


def test_a_bad_value_of_a_new_setting_names_the_variable_and_the_fix(dummy):
    with pytest.raises(ConfigError) as err:
        config.load({DUMMY: "many", "AIRFLOW_ECS_API_PORT": "0"})
    assert err.value.problems == [
        "invalid setting: AIRFLOW_ECS_API_PORT=0 must be from 1 to 65535",
        f"invalid setting: {DUMMY}='many' must be a whole number from 0 to 10; "
        f"e.g. {DUMMY}=3",
    ]
    with pytest.raises(ConfigError, match=f"{DUMMY}=11 must be from 0 to 10"):
        config.load({DUMMY: "11"})


def test_a_new_setting_is_known_and_documented(dummy):
    config.load({DUMMY: "1", f"{DUMMY}_FILE": "/run/secrets/retries"})  # not "unknown"
    assert (f"| `{DUMMY}` | `3` | Retries of the dummy feature. | `5` |"
            in reference.render())


def test_without_its_entry_a_setting_is_unknown():
    with pytest.raises(ConfigError, match=f"unknown setting: {DUMMY}"):
        config.load({DUMMY: "1"})
    assert DUMMY not in reference.render()


def test_the_table_holds_every_field_and_secret_in_order():
    table = config.table()
    fields = [f.name for f in dataclasses.fields(config.Settings)]
    assert [s.attr for s in table if not s.secret] == fields
    assert [s.name for s in table if s.secret] == [
        config.ADMIN_PASSWORD_VAR, config.SERVICE_ACCOUNT_PASSWORD_VAR, config.GIT_TOKEN_VAR,
        config.GIT_SSH_KEY_VAR,
        config.LDAP_BIND_PASSWORD_VAR, config.OIDC_CLIENT_SECRET_VAR]
    for s in table:
        assert s.name == config.PREFIX + s.attr.upper()
        assert s.meaning.endswith(".") and s.example, s.name
        if s.kind in (config.INTEGER, config.NUMBER):
            assert s.low <= s.default <= s.high, s.name
        if s.kind == config.CHOICE:
            assert s.default.lower() in s.choices, s.name
    # A Settings never holds a secret.
    assert not {s.attr for s in table if s.secret} & set(fields)


@pytest.mark.parametrize("setting", [s for s in config.table() if not s.secret],
                         ids=lambda s: s.name)
def test_every_value_reads_back_from_its_spelling(setting):
    """as_env spells a value so that load reads the same value back: what the entrypoint
    exports into a role's environment means there what it meant at start."""
    only = (setting.attr,)
    for value in (getattr(config.load({}), setting.attr),
                  getattr(config.load({setting.name: setting.example}, only), setting.attr)):
        spelled = config.as_env(value)
        if spelled:
            assert getattr(config.load({setting.name: spelled}, only), setting.attr) == value


def test_the_role_environment_carries_the_exported_settings():
    settings = config.load({"AIRFLOW_ECS_API_PORT": "9090"})
    env = defaults.apply("webserver", settings, {"AIRFLOW_ECS_DAGS_SOURCE": " ",
                                                 "AIRFLOW_ECS_STOP_TIMEOUT": "30"})
    assert env["AIRFLOW_ECS_API_PORT"] == "9090"
    assert env["AIRFLOW_ECS_DAGS_SOURCE"] == "image"  # blank reads as the default
    assert env["AIRFLOW_ECS_STOP_TIMEOUT"] == "30"  # what the user set stays as set
    exported = {s.name for s in config.table() if s.exported}
    assert exported == {"AIRFLOW_ECS_STOP_TIMEOUT", "AIRFLOW_ECS_API_PORT",
                        "AIRFLOW_ECS_DAGS_SOURCE"}
    assert exported <= set(defaults.apply("worker", config.load({}), {}))


def test_the_probe_reads_the_declared_defaults():
    assert health._setting({}, "api_port") == str(config.Settings().api_port)
    assert health._setting({}, "dags_source") == config.Settings().dags_source
    assert health._setting({"AIRFLOW_ECS_API_PORT": " 9 "}, "api_port") == "9"


def test_a_probe_beside_a_started_role_does_not_import_the_configuration():
    """The probe runs every 30 s: in a role the entrypoint started, what it reads of our
    settings is in the environment, and config (with dataclasses) is never imported."""
    settings = config.load({"AIRFLOW_ECS_API_PORT": "9"})
    env = running_env.mark(defaults.apply("webserver", settings, {}))
    env = {k: v for k, v in env.items() if k.startswith("AIRFLOW")}
    code = ("import sys; from entrypoint.cli import main; main(['health', 'webserver']); "
            "print('IMPORTED', [m for m in ('entrypoint.config', 'dataclasses') "
            "if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", **env})
    assert "IMPORTED []" in result.stdout, result.stdout + result.stderr
    assert "http://127.0.0.1:9/" in result.stdout


def test_the_worker_reads_its_settings_through_the_declaration(caplog):
    pytest.importorskip("airflow")
    from entrypoint.worker import celery_config, protection

    assert celery_config.shutdown_deadline({}) == config.Settings().stop_timeout - 10
    # Refused at start; a worker started with it anyway keeps the declared default.
    assert celery_config.shutdown_deadline({"AIRFLOW_ECS_STOP_TIMEOUT": "soon"}) == \
        config.Settings().stop_timeout - 10
    assert protection.MAX_MINUTES == config.declared("protection_minutes").high
    agent = {"ECS_AGENT_URI": "http://127.0.0.1:9"}
    assert protection.start_in_worker({**agent, "AIRFLOW_ECS_PROTECTION": "off"}, int) is None
    with caplog.at_level(logging.ERROR, logger="airflow-ecs.protection"):
        assert protection.start_in_worker(
            {**agent, "AIRFLOW_ECS_PROTECTION_MINUTES": "3000"}, int) is None
    assert "AIRFLOW_ECS_PROTECTION_MINUTES=3000 must be from 1 to 2880" in caplog.text


# Modules that still spell a name themselves: other changes own them, and import it from
# entrypoint.airflow_names next. This list only shrinks.
NOT_YET_MOVED = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": {"entrypoint/migrations.py"},
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": {"entrypoint/secrets.py"},
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": {"entrypoint/tools/ecs/environment.py"},
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": {"entrypoint/tools/ecs/environment.py"},
}


def test_no_module_reads_our_settings_or_spells_airflows_names_itself():
    """The runtime reads our settings through config's declaration, never as
    env.get("AIRFLOW_ECS_X", own default); Airflow's names in entrypoint.airflow_names are
    spelled there only. (The deployment tools, entrypoint/tools/ecs, write and inspect
    task definitions' environments: their variables are values there.)"""
    from entrypoint import airflow_names

    declared = {v for k, v in vars(airflow_names).items()
                if k.isupper() and isinstance(v, str) and v.startswith("AIRFLOW__")}
    ours = re.compile(r"""(\.get\(\s*|environ\[|env\[)["']AIRFLOW_ECS_(?!ROLE_ENV)""")
    spelled: dict[str, set[str]] = {}
    for source in sorted((ROOT / "entrypoint").rglob("*.py")):
        where = str(source.relative_to(ROOT))
        text = source.read_text()
        assert where.startswith("entrypoint/tools/ecs/") or not ours.search(text), where
        if where != "entrypoint/airflow_names.py":
            for name in declared:
                if f'"{name}"' in text:
                    spelled.setdefault(name, set()).add(where)
    assert {n: w - NOT_YET_MOVED.get(n, set()) for n, w in spelled.items()
            if w - NOT_YET_MOVED.get(n, set())} == {}
