"""Every private API of Airflow, Celery, kombu, botocore and s3fs that airflow-ecs relies on.

A private API is a name its library does not document or promise to keep: an
underscore name, an internal module or function, an attribute of a library's
object. Each one we use is declared here once: the library, the dotted name,
the shape the code using it was written for, where it is used, and what runs
instead when it is missing or changed.

A use site never reaches in by itself: it calls `lookup(ENTRY)`, which imports
the name and checks its shape, and returns it, or returns None after one
warning line naming the API and the fallback. The use site then keeps the
library's own behaviour: a correction is not installed, a fast path is not
taken, a public way is used. tests/unit/test_private_apis.py checks every
entry against the installed libraries, so an upgrade that removes or reshapes
one fails there, by name, and scans entrypoint/ for underscore names used
without an entry here.

Import-light: the health probe and the start-up import this module, so it
imports no library until a lookup asks for one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger("airflow-ecs.private_apis")

Kind = Literal["module", "class", "function", "method", "list", "sized", "value"]


@dataclass(frozen=True)
class PrivateApi:
    """One private name we use, and the shape our code was written against.

    kind: a module; a class (with `attributes`: declared as attrs fields or
    present on the class; `instance_attributes`: set by its constructor, checked
    on an instance made without arguments); a function, or a method of a class
    (its first parameter is the instance); a list; a sized collection; any value.
    parameters: the exact parameter names, in order, of a function we replace.
    accepts: the parameters a call of ours passes, by these names (None: we never
    call it); every other parameter must have a default.
    reads: attributes of `self` a method's source must still read (`self.NAME`): what
    its instance holds that we set for it, where no instance can be made to check.
    """

    library: str  # the distribution, as pip names it
    module: str
    attribute: str  # dotted path inside the module; "" for the module itself
    kind: Kind
    used_in: str
    fallback: str
    parameters: tuple[str, ...] | None = None
    accepts: tuple[str, ...] | None = None
    attributes: tuple[str, ...] = ()
    instance_attributes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.module}.{self.attribute}" if self.attribute else self.module


ENTRIES: list[PrivateApi] = []


def _entry(library: str, module: str, attribute: str, kind: Kind, *, used_in: str,
           fallback: str, parameters: tuple[str, ...] | None = None,
           accepts: tuple[str, ...] | None = None, attributes: tuple[str, ...] = (),
           instance_attributes: tuple[str, ...] = (), reads: tuple[str, ...] = ()) -> PrivateApi:
    entry = PrivateApi(library, module, attribute, kind, used_in, fallback, parameters,
                       accepts, attributes, instance_attributes, reads)
    ENTRIES.append(entry)
    return entry


# --- Airflow's task supervisor (entrypoint.worker.task_exit, entrypoint.worker.first_heartbeat)
_SUPERVISOR = "airflow.sdk.execution_time.supervisor"
_TASK_EXIT_FALLBACK = ("the task-exit correction is not installed; Airflow's supervisor runs "
                       "unchanged, and a finished task may keep its worker slot for up to "
                       "[workers] min_heartbeat_interval")
_FIRST_HEARTBEAT_FALLBACK = ("the first-heartbeat correction is not installed; Airflow's "
                             "supervisor runs unchanged and sends a heartbeat right after "
                             "starting each task")

SUPERVISOR = _entry(
    "apache-airflow-task-sdk", _SUPERVISOR, "WatchedSubprocess", "class",
    attributes=("selector", "_exit_code", "_process"),
    used_in="entrypoint/worker/task_exit.py: reads the selector's sockets, the exit code "
            "and the process handle to wait on",
    fallback=_TASK_EXIT_FALLBACK)
SERVICE_SUBPROCESS = _entry(
    "apache-airflow-task-sdk", _SUPERVISOR, "WatchedSubprocess._service_subprocess", "method",
    parameters=("self", "max_wait_time", "raise_on_timeout", "expect_signal"),
    used_in="entrypoint/worker/task_exit.py: replaced by a version that waits on the process "
            "when no socket is left",
    fallback=_TASK_EXIT_FALLBACK)
CHECK_SUBPROCESS_EXIT = _entry(
    "apache-airflow-task-sdk", _SUPERVISOR, "WatchedSubprocess._check_subprocess_exit",
    "method", accepts=("raise_on_timeout", "expect_signal"),
    used_in="entrypoint/worker/task_exit.py: called after that wait, as Airflow's own method "
            "does after select()",
    fallback=_TASK_EXIT_FALLBACK)
PROCESS_WAIT = _entry(
    "apache-airflow-task-sdk", _SUPERVISOR, "ProcessTracker.wait", "method",
    accepts=("timeout",),
    used_in="entrypoint/worker/task_exit.py: the supervisor's process handle (`_process`), "
            "waited on until the process exits",
    fallback=_TASK_EXIT_FALLBACK)
ACTIVITY_SUBPROCESS = _entry(
    "apache-airflow-task-sdk", _SUPERVISOR, "ActivitySubprocess", "class",
    attributes=("_last_heartbeat_attempt", "_last_successful_heartbeat"),
    used_in="entrypoint/worker/first_heartbeat.py: the run call's success counts as the "
            "first heartbeat attempt",
    fallback=_FIRST_HEARTBEAT_FALLBACK)
ON_CHILD_STARTED = _entry(
    "apache-airflow-task-sdk", _SUPERVISOR, "ActivitySubprocess._on_child_started", "method",
    parameters=("self", "ti", "dag_rel_path", "bundle_info", "sentry_integration"),
    used_in="entrypoint/worker/first_heartbeat.py: wrapped to set the heartbeat attempt "
            "after the run call",
    fallback=_FIRST_HEARTBEAT_FALLBACK)

# --- Airflow's task code, loaded before the pool forks (entrypoint.worker.preload) ---------------
_PRELOAD_FALLBACK = "not preloaded in the worker; its first tasks load it"

TASK_RUNNER_MODULE = _entry(
    "apache-airflow-task-sdk", "airflow.sdk.execution_time.task_runner", "", "module",
    used_in="entrypoint/worker/preload.py: what a task process imports to run its task",
    fallback=_PRELOAD_FALLBACK)
DAGBAG_MODULE = _entry(
    "apache-airflow-core", "airflow.dag_processing.dagbag", "", "module",
    used_in="entrypoint/worker/preload.py: what a task process imports to parse its DAG file",
    fallback=_PRELOAD_FALLBACK)
IMPORT_ALL_MODELS = _entry(
    "apache-airflow-core", "airflow.models", "import_all_models", "function", accepts=(),
    used_in="entrypoint/worker/preload.py: imports every ORM model before the mappers are "
            "configured",
    fallback=_PRELOAD_FALLBACK)

# --- Airflow's CLI, in the migrate child (entrypoint.programs.airflow_migrate) -------------------
_MIGRATE_FALLBACK = ("`airflow db migrate` runs unchanged; on a database with no tables yet "
                     "PostgreSQL logs `relation \"log\" does not exist` once")

CLI_PRE_EXEC_CALLBACKS = _entry(
    "apache-airflow-core", "airflow.utils.cli_action_loggers", "__pre_exec_callbacks", "list",
    used_in="entrypoint/programs/airflow_migrate.py: the action-log callback is removed from "
            "it on a database with no tables yet",
    fallback=_MIGRATE_FALLBACK)
CLI_DEFAULT_ACTION_LOG = _entry(
    "apache-airflow-core", "airflow.utils.cli_action_loggers", "default_action_log",
    "function",
    used_in="entrypoint/programs/airflow_migrate.py: the callback removed",
    fallback=_MIGRATE_FALLBACK)
SETTINGS_ENGINE = _entry(
    "apache-airflow-core", "airflow.settings", "engine", "value",
    used_in="entrypoint/programs/airflow_migrate.py: the metadata database's engine, to see "
            "whether the log table exists; entrypoint/worker/orm_release.py: disposed in the "
            "worker's main process before the pool forks",
    fallback=_MIGRATE_FALLBACK + "; a worker keeps the connections its start opened")
SETTINGS_CONFIGURE_ORM = _entry(
    "apache-airflow-core", "airflow.settings", "configure_orm", "function", accepts=(),
    used_in="entrypoint/programs/airflow_migrate.py: creates that engine when the CLI has not "
            "yet",
    fallback=_MIGRATE_FALLBACK)

# --- Celery's database result backend (entrypoint.worker.result_engine) -------------------------
_RESULT_ENGINE_FALLBACK = ("Celery's result backend is left as it is: outside a forked pool "
                           "process (the scheduler) it opens a new database engine and "
                           "connection for each query")
RESULT_SESSION_MANAGER = _entry(
    "celery", "celery.backends.database.session", "SessionManager", "class",
    instance_attributes=("forked",),
    used_in="entrypoint/worker/result_engine.py: `forked` tells Celery's own pooled path "
            "(a forked pool process) from the one replaced",
    fallback=_RESULT_ENGINE_FALLBACK)
RESULT_GET_ENGINE = _entry(
    "celery", "celery.backends.database.session", "SessionManager.get_engine", "method",
    parameters=("self", "dburi", "kwargs"),
    used_in="entrypoint/worker/result_engine.py: replaced by one that keeps a pooled engine "
            "per process where Celery would make a NullPool engine per query",
    fallback=_RESULT_ENGINE_FALLBACK)

# --- Airflow's scheduler loop (entrypoint.scheduler.pacing) ---------------------------------------
_RUNNER = "airflow.jobs.scheduler_job_runner"
_PACING_FALLBACK = ("the scheduler pauses [scheduler] scheduler_idle_sleep_time after every idle "
                    "loop, busy or at rest (AIRFLOW_ECS_SCHEDULER_BUSY_SLEEP_SECONDS unused)")

SCHEDULER_JOB_RUNNER = _entry(
    "apache-airflow-core", _RUNNER, "SchedulerJobRunner", "class",
    used_in="entrypoint/scheduler/pacing.py: its scheduling step is wrapped",
    fallback=_PACING_FALLBACK)
DO_SCHEDULING = _entry(
    "apache-airflow-core", _RUNNER, "SchedulerJobRunner._do_scheduling", "method",
    parameters=("self", "session"),
    used_in="entrypoint/scheduler/pacing.py: wrapped to set the pause after the loop from "
            "the tasks queued and the executors' work",
    fallback=_PACING_FALLBACK)
SCHEDULER_LOOP = _entry(
    "apache-airflow-core", _RUNNER, "SchedulerJobRunner._run_scheduler_loop", "method",
    parameters=("self",), reads=("_scheduler_idle_sleep_time", "executors"),
    used_in="entrypoint/scheduler/pacing.py: the loop pauses self._scheduler_idle_sleep_time "
            "after an idle loop, read at each pause; its executors are self.executors",
    fallback=_PACING_FALLBACK)
BASE_EXECUTOR = _entry(
    "apache-airflow-core", "airflow.executors.base_executor", "BaseExecutor", "class",
    instance_attributes=("queued_tasks", "running"),
    used_in="entrypoint/scheduler/pacing.py: whether an executor holds queued or running tasks",
    fallback=_PACING_FALLBACK)

# --- Airflow's Celery executor, in the scheduler (entrypoint.scheduler.outage) -------------------
_OUTAGE_FALLBACK = ("the Celery executor's sends and reads run unwrapped: while Redis does not "
                    "answer, the scheduler exits and sent tasks fail their try, as in Airflow")
EXECUTOR = _entry(
    "apache-airflow-core", "airflow.executors.base_executor", "BaseExecutor", "class",
    used_in="entrypoint/scheduler/outage.py: its heartbeat is wrapped",
    fallback=_OUTAGE_FALLBACK)
EXECUTOR_HEARTBEAT = _entry(
    "apache-airflow-core", "airflow.executors.base_executor", "BaseExecutor.heartbeat", "method",
    parameters=("self",),
    used_in="entrypoint/scheduler/outage.py: wrapped to wrap the Celery executor's send and "
            "read before its first heartbeat, once that class exists, and to skip heartbeats "
            "while Redis does not answer",
    fallback=_OUTAGE_FALLBACK)
CELERY_EXECUTOR = _entry(
    "apache-airflow-providers-celery", "airflow.providers.celery.executors.celery_executor",
    "CeleryExecutor", "class",
    used_in="entrypoint/scheduler/outage.py: its send and state read are wrapped; "
            "`celery_app` probes the broker",
    fallback=_OUTAGE_FALLBACK)
CELERY_EXECUTOR_SYNC = _entry(
    "apache-airflow-providers-celery", "airflow.providers.celery.executors.celery_executor",
    "CeleryExecutor.sync", "method", parameters=("self",),
    used_in="entrypoint/scheduler/outage.py: wrapped to skip one loop's read of task "
            "states when the result backend is unreachable",
    fallback=_OUTAGE_FALLBACK)
CELERY_EXECUTOR_SEND = _entry(
    "apache-airflow-providers-celery", "airflow.providers.celery.executors.celery_executor",
    "CeleryExecutor._send_workloads_to_celery", "method",
    parameters=("self", "workload_tuples_to_send"),
    used_in="entrypoint/scheduler/outage.py: wrapped to count a send the broker refused as "
            "one that timed out; it returns (key, args, result) per workload, a failed "
            "send's result holding the error as `exception`",
    fallback=_OUTAGE_FALLBACK)

# --- Celery, in the worker (entrypoint.worker.celery_config) ------------------------------------
CELERY_ACTIVE_REQUESTS = _entry(
    "celery", "celery.worker.state", "active_requests", "sized",
    used_in="entrypoint/worker/celery_config.py: scale-in protection counts the requests the "
            "worker has handed to its pool",
    fallback="scale-in protection is not started; ECS may stop a busy worker on scale-in, "
             "as without it")

# --- kombu's Redis transport, in the worker (entrypoint.worker.restore) --------------------------
_RESTORE_FALLBACK = ("messages a worker held when Redis went away stay unacknowledged until the "
                     "visibility timeout, as in kombu; Airflow requeues a task that never "
                     "started after [scheduler] task_queued_timeout")
KOMBU_REDIS_QOS = _entry(
    "kombu", "kombu.transport.redis", "QoS", "class",
    attributes=("restore_by_tag", "unacked_index_key"),
    used_in="entrypoint/worker/restore.py: its put-back of unacknowledged messages is wrapped; "
            "restore_by_tag puts one back later",
    fallback=_RESTORE_FALLBACK)
KOMBU_RESTORE_UNACKED = _entry(
    "kombu", "kombu.transport.redis", "QoS.restore_unacked", "method",
    parameters=("self", "client"), reads=("_delivered",),
    used_in="entrypoint/worker/restore.py: wrapped to keep the delivery tags it meant to put "
            "back (self._delivered) when Redis does not answer",
    fallback=_RESTORE_FALLBACK)

# --- kombu, in the worker probe (entrypoint.optional_imports) -----------------------------------
KOMBU_ENTRYPOINTS = _entry(
    "kombu", "kombu.utils.compat", "entrypoints", "function", accepts=("namespace",),
    used_in="entrypoint/optional_imports.py: answers \"no plugins\" while the worker probe "
            "imports kombu",
    fallback="kombu searches every installed distribution for plugins, as it does "
             "unchanged: the worker probe costs more CPU")

# --- botocore and s3fs, in the S3 DAG sync (entrypoint.dagsync) ---------------------------------
BOTOCORE_HOST_FROM_URL = _entry(
    "botocore", "botocore.auth", "_host_from_url", "function", accepts=("url",),
    used_in="entrypoint/dagsync/presign.py: the Host header botocore signs, for the "
            "presigner's own URLs",
    fallback="every presigned URL comes from s3fs (botocore's signer): the sync costs more "
             "CPU")
BOTOCORE_CLOCK = _entry(
    "botocore", "botocore.auth", "get_current_datetime", "function", accepts=(),
    used_in="entrypoint/dagsync/presign.py: the signing time, from the clock botocore's "
            "signer reads",
    fallback="every presigned URL comes from s3fs (botocore's signer): the sync costs more "
             "CPU")
S3FS_URL = _entry(
    "s3fs", "s3fs", "S3FileSystem._url", "method", accepts=("path", "expires"),
    used_in="entrypoint/dagsync/presign.py: the first presigned URL (fsspec names the "
            "coroutine form of each method with a leading underscore)",
    fallback="URLs from s3fs's aiobotocore client (set_session, then generate_presigned_url: "
             "what _url does)")
S3FS_FIND = _entry(
    "s3fs", "s3fs", "S3FileSystem._find", "method", accepts=("path", "detail", "withdirs"),
    used_in="entrypoint/dagsync/s3source.py: the listing, on s3fs's event loop under the "
            "sync's deadline",
    fallback="the listing through fsspec's public find(), in a thread")
S3FS_PIPE_FILE = _entry(
    "s3fs", "s3fs", "S3FileSystem._pipe_file", "method", accepts=("path", "data"),
    used_in="entrypoint/bundles/s3.py: writing a DAG version's manifest, on s3fs's event "
            "loop under the sync's deadline",
    fallback="fsspec's public, blocking pipe_file(), in a thread")
S3FS_CAT_FILE = _entry(
    "s3fs", "s3fs", "S3FileSystem._cat_file", "method", accepts=("path",),
    used_in="entrypoint/bundles/s3.py: reading a DAG version's manifest, on s3fs's event "
            "loop under the sync's deadline",
    fallback="fsspec's public, blocking cat_file(), in a thread")
FAB_LDAP_USER_ROLES = _entry(
    "apache-airflow-providers-fab", "airflow.providers.fab.auth_manager.security_manager.override",
    "FabAirflowSecurityManagerOverride._ldap_calculate_user_roles", "method",
    parameters=("self", "user_attributes"),
    used_in="entrypoint/webserver/fab_security.py: overridden so that an LDAP user in no "
            "mapped group gets no role (and is refused) instead of FAB's registration role",
    fallback="FAB's own roles for such a user: the registration role (Public unless set)")
BOTOCORE_VALIDATION_ERRORS = _entry(
    "botocore", "botocore.validate", "ValidationErrors", "class",
    instance_attributes=("_errors",),
    used_in="entrypoint/tools/ecs/validate.py: each error of a validation report as data "
            "(kind, path, details), one problem per error",
    fallback="botocore's own report text (generate_report), one problem per line")


# --- checking and looking up --------------------------------------------------------------------
def resolve(entry: PrivateApi) -> Any:
    """The object entry names, its shape checked; LookupError saying what is wrong."""
    import importlib

    try:
        found: Any = importlib.import_module(entry.module)
    except Exception as exc:  # noqa: BLE001 - any failure to import means it is not usable
        raise LookupError(f"{entry.module} does not import ({type(exc).__name__}: {exc})"
                          ) from None
    walked = entry.module
    for part in entry.attribute.split(".") if entry.attribute else ():
        if not hasattr(found, part):
            raise LookupError(f"{walked} has no {part}")
        found = getattr(found, part)
        walked = f"{walked}.{part}"
    problem = _shape_problem(entry, found)
    if problem:
        raise LookupError(problem)
    return found


def _shape_problem(entry: PrivateApi, found: Any) -> str | None:
    if entry.kind == "module":
        return None
    if entry.kind == "class":
        if not isinstance(found, type):
            return f"is a {type(found).__name__}, not a class"
        # attrs classes declare their instance attributes; others have them on the class.
        declared = {a.name for a in getattr(found, "__attrs_attrs__", ())}
        missing = [a for a in entry.attributes if a not in declared and not hasattr(found, a)]
        if entry.instance_attributes:
            try:
                instance = found()
            except Exception as exc:  # noqa: BLE001 - a changed constructor is a changed shape
                return f"can no longer be made without arguments ({type(exc).__name__}: {exc})"
            missing += [a for a in entry.instance_attributes if not hasattr(instance, a)]
        return f"has no {', '.join(missing)}" if missing else None
    if entry.kind in ("function", "method"):
        return _signature_problem(entry, found) or _reads_problem(entry, found)
    if entry.kind == "list":
        return None if isinstance(found, list) else f"is a {type(found).__name__}, not a list"
    if entry.kind == "sized":
        return None if hasattr(found, "__len__") else \
            f"is a {type(found).__name__}, which has no length"
    return None


def _reads_problem(entry: PrivateApi, found: Any) -> str | None:
    if not entry.reads:
        return None
    import inspect
    import re

    try:
        source = inspect.getsource(inspect.unwrap(found))
    except (OSError, TypeError) as exc:
        return f"has no readable source to check ({exc})"
    missing = [name for name in entry.reads
               if not re.search(rf"\bself\.{re.escape(name)}\b", source)]
    return f"no longer reads self.{', self.'.join(missing)}" if missing else None


def _signature_problem(entry: PrivateApi, found: Any) -> str | None:
    import inspect

    if not callable(found):
        return f"is a {type(found).__name__}, not callable"
    try:
        # Follows __wrapped__: a replacement of ours is checked as the original it wraps.
        signature = inspect.signature(found)
    except (TypeError, ValueError) as exc:
        return f"has no readable signature ({exc})"
    names = tuple(signature.parameters)
    if entry.parameters is not None and names != entry.parameters:
        return (f"takes ({', '.join(names)}); this code was written for "
                f"({', '.join(entry.parameters)})")
    if entry.accepts is None:
        return None
    instance = (None,) if entry.kind == "method" else ()
    try:
        signature.bind(*instance, **dict.fromkeys(entry.accepts))
    except TypeError as exc:
        return (f"takes ({', '.join(names)}), which a call passing "
                f"({', '.join(entry.accepts) or 'nothing'}) does not fit: {exc}")
    return None


def check(entry: PrivateApi) -> str | None:
    """What is wrong with entry in the installed libraries, naming it; None when it fits."""
    try:
        resolve(entry)
    except LookupError as exc:
        return _described(entry, exc)
    return None


def _described(entry: PrivateApi, problem: LookupError) -> str:
    return f"{entry.name} ({entry.library}{_version(entry.library)}): {problem}"


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return " " + metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ", not installed"


_warned: set[tuple[str, str]] = set()


def lookup(entry: PrivateApi) -> Any | None:
    """The object entry names, or None (warning once per process) when it is missing or
    changed: the caller then takes entry.fallback."""
    fits, found = _looked_up(entry)
    return found if fits else None


def available(entry: PrivateApi) -> bool:
    """lookup() for a value that may itself be None: whether entry fits (warning if not)."""
    return _looked_up(entry)[0]


def _looked_up(entry: PrivateApi) -> tuple[bool, Any]:
    try:
        return True, resolve(entry)
    except LookupError as exc:
        problem = _described(entry, exc)
    if (entry.name, problem) not in _warned:
        _warned.add((entry.name, problem))
        log.warning("private API changed: %s; so %s", problem, entry.fallback)
    return False, None
