"""The private APIs airflow-ecs relies on, against the installed libraries.

Every entry of entrypoint.private_apis must fit the installed Airflow, Celery,
kombu, botocore and s3fs: after an upgrade, a failure here names the API that
changed. When one is removed or reshaped, its use site falls back to the
library's own behaviour (shown here by removing a few). And no underscore name
of another library's object is used in entrypoint/ without an entry.
"""

from __future__ import annotations

import ast
import asyncio
import textwrap
import time
from pathlib import Path

import pytest

from entrypoint import private_apis
from entrypoint.private_apis import ENTRIES, PrivateApi

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "entrypoint"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees the lookups' warnings again (they are once per process)."""
    monkeypatch.setattr(private_apis, "_warned", set())


@pytest.fixture
def warnings(monkeypatch):
    lines: list[str] = []
    # Airflow's logging set-up, once imported, owns the handlers: record the call itself.
    monkeypatch.setattr(private_apis.log, "warning",
                        lambda msg, *args: lines.append(msg % args))
    return lines


# --- every entry against the installed libraries ----------------------------------------------
@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_the_installed_library_still_has_it_in_the_declared_shape(entry):
    assert private_apis.check(entry) is None


def _constants() -> dict[str, PrivateApi]:
    return {name: value for name, value in vars(private_apis).items()
            if isinstance(value, PrivateApi)}


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_each_entry_is_read_where_it_says_it_is_used(entry):
    names = [name for name, value in _constants().items() if value is entry]
    assert len(names) == 1, f"{entry.name}: bind it to one module-level name"
    path = PACKAGE.parent / entry.used_in.split(":", 1)[0]
    assert path.is_file(), f"{entry.name}: used_in names no file: {entry.used_in}"
    assert f"private_apis.{names[0]}" in path.read_text(), \
        f"{path.relative_to(ROOT)} does not read private_apis.{names[0]}"
    assert entry.fallback, f"{entry.name}: say what runs when it is missing"


# --- the check names what changed -------------------------------------------------------------
def test_the_check_names_a_removed_function(monkeypatch):
    from kombu.utils import compat

    monkeypatch.delattr(compat, "entrypoints")
    problem = private_apis.check(private_apis.KOMBU_ENTRYPOINTS)
    assert problem is not None and problem.startswith("kombu.utils.compat.entrypoints (kombu ")
    assert "has no entrypoints" in problem


def _rename_field(monkeypatch, cls, name):
    """As if an Airflow upgrade renamed one attrs field of cls."""
    monkeypatch.setattr(cls, "__attrs_attrs__",
                        tuple(a for a in cls.__attrs_attrs__ if a.name != name))
    if name in vars(cls):
        monkeypatch.delattr(cls, name)


def test_the_check_names_a_renamed_attribute(monkeypatch):
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    _rename_field(monkeypatch, WatchedSubprocess, "_exit_code")
    problem = private_apis.check(private_apis.SUPERVISOR)
    assert problem is not None
    assert problem.startswith("airflow.sdk.execution_time.supervisor.WatchedSubprocess "
                              "(apache-airflow-task-sdk ")
    assert problem.endswith("has no _exit_code")


def test_the_check_names_a_changed_signature(monkeypatch):
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    monkeypatch.setattr(WatchedSubprocess, "_check_subprocess_exit",
                        lambda self, raise_on_timeout=False: None)
    problem = private_apis.check(private_apis.CHECK_SUBPROCESS_EXIT)
    assert problem is not None and "_check_subprocess_exit" in problem
    assert "expect_signal" in problem


def test_the_check_names_a_module_that_is_gone():
    gone = PrivateApi("apache-airflow-core", "airflow.no_such_module_here", "", "module",
                      used_in="nowhere", fallback="nothing")
    problem = private_apis.check(gone)
    assert problem is not None and problem.startswith("airflow.no_such_module_here")
    assert "does not import (ModuleNotFoundError" in problem


def test_a_lookup_that_fails_warns_once_naming_the_api_and_the_fallback(monkeypatch,
                                                                          warnings):
    from kombu.utils import compat

    monkeypatch.delattr(compat, "entrypoints")
    assert private_apis.lookup(private_apis.KOMBU_ENTRYPOINTS) is None
    assert private_apis.lookup(private_apis.KOMBU_ENTRYPOINTS) is None
    assert len(warnings) == 1
    assert warnings[0].startswith("private API changed: kombu.utils.compat.entrypoints")
    assert warnings[0].endswith("; so " + private_apis.KOMBU_ENTRYPOINTS.fallback)


# --- the use sites fall back ------------------------------------------------------------------
def test_a_renamed_supervisor_attribute_leaves_airflows_method_in_place(monkeypatch,
                                                                          warnings):
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    from entrypoint.worker import task_exit

    original = WatchedSubprocess._service_subprocess
    _rename_field(monkeypatch, WatchedSubprocess, "_process")
    assert task_exit.install() is False
    assert WatchedSubprocess._service_subprocess is original
    assert len(warnings) == 1 and "has no _process" in warnings[0]


def test_a_changed_method_the_patch_calls_leaves_airflows_method_in_place(monkeypatch):
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    from entrypoint.worker import task_exit

    original = WatchedSubprocess._service_subprocess
    monkeypatch.setattr(WatchedSubprocess, "_check_subprocess_exit", lambda self: None)
    assert task_exit.install() is False
    assert WatchedSubprocess._service_subprocess is original


def test_a_renamed_heartbeat_attribute_leaves_airflows_method_in_place(monkeypatch):
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    from entrypoint.worker import first_heartbeat

    original = ActivitySubprocess._on_child_started
    _rename_field(monkeypatch, ActivitySubprocess, "_last_heartbeat_attempt")
    assert first_heartbeat.install() is False
    assert ActivitySubprocess._on_child_started is original


def test_the_check_names_an_attribute_the_scheduler_loop_no_longer_reads(monkeypatch):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    def _run_scheduler_loop(self):  # as if an upgrade paused on a local variable instead
        pause = 1.0
        for executor in self.executors:
            executor.heartbeat()
        time.sleep(pause)

    monkeypatch.setattr(SchedulerJobRunner, "_run_scheduler_loop", _run_scheduler_loop)
    problem = private_apis.check(private_apis.SCHEDULER_LOOP)
    assert problem is not None
    assert problem.endswith("no longer reads self._scheduler_idle_sleep_time")


def test_a_scheduler_loop_that_no_longer_reads_the_pause_leaves_airflows_step_alone(
        monkeypatch, warnings):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    from entrypoint.scheduler import pacing

    def _run_scheduler_loop(self):
        time.sleep(1.0)

    original = SchedulerJobRunner._do_scheduling
    monkeypatch.setattr(SchedulerJobRunner, "_run_scheduler_loop", _run_scheduler_loop)
    assert pacing.install({}) is False
    assert SchedulerJobRunner._do_scheduling is original
    assert len(warnings) == 1 and "no longer reads self._scheduler_idle_sleep_time" in warnings[0]
    assert warnings[0].endswith(private_apis.SCHEDULER_LOOP.fallback)


def test_kombu_is_imported_as_it_is_when_its_plugin_function_is_gone(monkeypatch):
    from kombu.utils import compat

    from entrypoint.optional_imports import kombu_without_plugins

    monkeypatch.delattr(compat, "entrypoints")
    with kombu_without_plugins():
        assert not hasattr(compat, "entrypoints")  # nothing put in its place
    assert not hasattr(compat, "entrypoints")


def test_kombus_plugin_search_is_answered_within_the_block_and_restored():
    from kombu.utils import compat

    from entrypoint.optional_imports import kombu_without_plugins

    original = compat.entrypoints
    with kombu_without_plugins():
        assert list(compat.entrypoints("kombu.serializers")) == []
    assert compat.entrypoints is original


def test_a_broken_kombu_makes_the_worker_probe_unknown_not_unhealthy(monkeypatch, capsys,
                                                                      tmp_path):
    """The probe's ping goes through kombu's documented Mailbox.call, which relies on
    kombu's own internals; those changing must not turn a healthy worker unhealthy."""
    from kombu.pidbox import Mailbox

    from entrypoint.cli import main
    from entrypoint.probe import health

    # TMPDIR: no worker's liveness record there, so the probe pings (this machine's /tmp may
    # hold one of another worker).
    env = {"AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:1/0", "TMPDIR": str(tmp_path)}
    # The machinery intact, nothing listening: a real failure, reported as one.
    assert not health.probe("worker", env).healthy
    monkeypatch.delattr(Mailbox, "_broadcast")
    result = health.probe("worker", env)
    assert result.healthy, result.reason
    assert result.reason.startswith("worker: probe could not check celery@")
    assert "kombu API changed (AttributeError: " in result.reason
    assert result.reason.endswith("; health unknown")
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", env["AIRFLOW__CELERY__BROKER_URL"])
    monkeypatch.setenv("TMPDIR", env["TMPDIR"])
    monkeypatch.setenv("AIRFLOW_ECS_ROLE_ENV", "1")  # this environment, not another role's
    assert main(["health", "worker"]) == 0
    assert capsys.readouterr().out.startswith("healthy: worker: probe could not check")


def test_the_probes_ping_is_kombus_documented_call():
    import inspect

    from kombu.pidbox import Mailbox

    inspect.signature(Mailbox.call).bind(None, ["celery@host"], "ping", timeout=1.0)


def test_a_missing_callback_list_leaves_the_migrate_command_unchanged(monkeypatch):
    from airflow import settings
    from airflow.utils import cli_action_loggers

    from entrypoint.programs import airflow_migrate

    monkeypatch.delattr(cli_action_loggers, "__pre_exec_callbacks")
    configured = []
    monkeypatch.setattr(settings, "configure_orm", lambda: configured.append(True))
    assert airflow_migrate.drop_action_log_without_log_table() is False
    assert configured == []  # the database is not even looked at


def test_a_missing_request_count_leaves_scale_in_protection_off(monkeypatch):
    from celery.worker import state

    from entrypoint.worker import celery_config

    started = []
    monkeypatch.setattr(celery_config.protection, "start_in_worker",
                        lambda environ, count: started.append(count()))
    celery_config._start_scale_in_protection()
    assert started == [len(state.active_requests)]
    monkeypatch.delattr(state, "active_requests")
    celery_config._start_scale_in_protection()
    assert len(started) == 1


def test_without_the_structured_report_botocores_own_text_is_used(monkeypatch):
    from botocore.validate import ValidationErrors

    from entrypoint.tools.ecs import validate

    doc = {"family": "f", "bogus": 1}
    structured = validate.against_model(doc, "ecs", "RegisterTaskDefinition", "td.json")
    # As if botocore kept its errors under another name.
    monkeypatch.setattr(ValidationErrors, "__init__", lambda self: setattr(self, "_kept", []))
    monkeypatch.setattr(ValidationErrors, "report", lambda self, name, reason, **kwargs:
                        self._kept.append((reason, name, kwargs)))
    monkeypatch.setattr(ValidationErrors, "has_errors", lambda self: bool(self._kept))
    monkeypatch.setattr(ValidationErrors, "generate_report", lambda self: "\n".join(
        self._format_error(error) for error in self._kept))
    assert private_apis.check(private_apis.BOTOCORE_VALIDATION_ERRORS).endswith(
        "has no _errors")
    text = validate.against_model(doc, "ecs", "RegisterTaskDefinition", "td.json")
    assert len(text) == len(structured) == 2
    assert any(p.startswith('td.json: Unknown parameter in input: "bogus"') for p in text)
    assert any(p.startswith('td.json: Missing required parameter in input: '
                            '"containerDefinitions"') for p in text)


class _ListingFs:
    """An S3FileSystem's listing side: its event loop, and fsspec's public find()."""

    def __init__(self, loop):
        self.loop = loop
        self.calls = []

    def find(self, path, detail=False, withdirs=False):
        self.calls.append(("find", path, detail, withdirs))
        return {f"{path}a.py": {"type": "file", "ETag": '"e1"', "size": 3}}

    async def _find(self, path, detail=False, withdirs=False):
        self.calls.append(("_find", path, detail, withdirs))
        return self.find(path, detail, withdirs)


def test_without_s3fs_coroutine_find_the_listing_uses_the_public_one(monkeypatch):
    import fsspec.asyn
    import s3fs

    from entrypoint.config import load
    from entrypoint.dagsync import s3fetch, s3source

    env = {"AIRFLOW_ECS_DAGS_SOURCE": "s3", "AIRFLOW_ECS_DAGS_S3_URI": "s3://bucket/dags/"}
    settings = load(env)
    fs = _ListingFs(fsspec.asyn.get_loop())
    listed = s3source.listing(fs, settings, s3fetch.Deadline(30))
    assert listed.objects == {"a.py": ("e1", 3)}
    assert [call[0] for call in fs.calls] == ["_find", "find"]
    monkeypatch.delattr(s3fs.S3FileSystem, "_find")
    monkeypatch.delattr(fsspec.asyn.AsyncFileSystem, "_find")
    fs.calls.clear()
    assert s3source.listing(fs, settings, s3fetch.Deadline(30)).objects == listed.objects
    assert fs.calls == [("find", "bucket/dags/", True, False)]
    assert isinstance(fs.loop, asyncio.AbstractEventLoop)


def test_an_unchanged_library_is_used_without_a_warning(warnings):
    from airflow import settings
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    found = private_apis.lookup(private_apis.SERVICE_SUBPROCESS)
    assert found is WatchedSubprocess._service_subprocess
    # A value that may itself be None: present, whatever it holds.
    assert private_apis.available(private_apis.SETTINGS_ENGINE) is True
    assert private_apis.lookup(private_apis.SETTINGS_ENGINE) is settings.engine
    assert warnings == []


# --- no unregistered private use ---------------------------------------------------------------
# Underscore names that are not another library's private API.
ALLOWED = {
    "_Environ": "os._Environ, the standard library's type of os.environ (a type hint)",
}


def _registered() -> set[str]:
    names = set()
    for entry in ENTRIES:
        names.update(part for part in entry.attribute.split(".") if part)
        names.update(entry.attributes)
        names.update(entry.instance_attributes)
        names.update(entry.reads)
    return names


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, name) of each underscore name read from an object not our own: attributes
    (`self` and `cls` are ours only in the methods of a class defined here, and in the
    functions nested in them), `from X import _name` of another package, and
    getattr-family calls with a constant name."""
    uses = []
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)

    def visit(node: ast.AST, own_self: bool, in_class: bool) -> None:
        if isinstance(node, functions):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            if {a.arg for a in arguments} & {"self", "cls"}:
                own_self = in_class  # a function of its own `self`: a method of ours?
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not _is_dunder(node.attr) and not (
                    own_self and isinstance(node.value, ast.Name)
                    and node.value.id in ("self", "cls")):
            uses.append((node.lineno, node.attr))
        if isinstance(node, ast.ImportFrom) and node.level == 0 \
                and not (node.module or "").startswith("entrypoint"):
            uses.extend((node.lineno, alias.name) for alias in node.names
                        if alias.name.startswith("_") and not _is_dunder(alias.name))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) \
                and node.args[1].value.startswith("_") and not _is_dunder(node.args[1].value):
            uses.append((node.lineno, node.args[1].value))
        for child in ast.iter_child_nodes(node):
            visit(child, own_self, isinstance(node, ast.ClassDef))

    visit(ast.parse(source), own_self=False, in_class=False)
    return uses


def test_every_private_use_in_the_package_is_registered():
    known = _registered() | set(ALLOWED)
    unregistered = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, name in private_uses(path.read_text()):
            if name not in known:
                unregistered.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not unregistered, ("private names of other libraries used without an entry in "
                              "entrypoint/private_apis.py (declare them there, and read them "
                              "through private_apis.lookup):\n" + "\n".join(unregistered))


def test_the_scan_sees_the_uses_it_must_see():
    found = {name for path in PACKAGE.rglob("*.py")
             for _, name in private_uses(path.read_text())}
    # One of each form: a patched supervisor's attributes, an s3fs coroutine, a botocore
    # report's field.
    assert {"_exit_code", "_process", "_last_heartbeat_attempt", "_url", "_find",
            "_errors"} <= found


@pytest.mark.parametrize("source, name", [
    ("def ping(mailbox):\n    return mailbox._broadcast('ping')\n", "_broadcast"),
    ("from botocore.auth import _host_from_url\n", "_host_from_url"),
    ("x = getattr(mod, '_private_thing', None)\n", "_private_thing"),
    ("def wrap(original):\n    def method(self):\n        return self._secret\n"
     "    return method\n", "_secret"),
    ("class Ours:\n    def run(self):\n        return self.fs._url('b/k')\n", "_url"),
])
def test_a_new_private_use_is_noticed(source, name):
    assert [found for _, found in private_uses(source)] == [name]


@pytest.mark.parametrize("source", [
    "class Ours:\n    def __init__(self):\n        self._base = None\n",
    "class Ours:\n    @classmethod\n    def make(cls):\n        return cls._default\n",
    "from entrypoint.waits import _engine\n",
    "x = obj.__class__\n",
])
def test_our_own_privates_are_not_flagged(source):
    assert private_uses(textwrap.dedent(source)) == []
