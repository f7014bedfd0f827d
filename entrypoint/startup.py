"""The start-up sequence every image runs, top to bottom in `start()`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from entrypoint import (
    checks,
    config,
    dagsync,
    defaults,
    fingerprints,
    procs,
    roles,
    running_env,
    secrets,
    waits,
)
from entrypoint.errors import ConfigError
from entrypoint.log import log


def start(role: str, extra_args: Sequence[str] = (), command: Sequence[str] = (),
          environ: Mapping[str, str] | None = None) -> None:
    """Run the start-up sequence, then exec the role (or `command` when role is "exec").

    Never returns: it execs, or raises an EntrypointError carrying the exit code.
    """
    env = dict(os.environ if environ is None else environ)
    procs.install_signal_handlers()
    try:
        settings = config.load(env)                                   # 1. configuration
        log.setLevel(settings.log_level)
        resolved = secrets.resolve(env, settings)                     # 2. secrets
        if resolved.env != env:
            # Our settings may come from Parameter Store as well: read them again.
            settings = config.load(resolved.env)
            log.setLevel(settings.log_level)
        env = defaults.apply(role, settings, resolved.env)
        problems = checks.check(role, settings, env)
        if problems:
            raise ConfigError(problems)
        dagsync.sync_at_start(settings, env, role)                    # 3. DAGs (seam)
        waits.wait_for_dependencies(role, settings, env)              # 4. dependencies
        fingerprints.verify_and_publish(role, settings, env)
        env = running_env.mark(env)  # so that `airflow-ecs health` finds the resolved values
        launch = roles.prepare(role, settings, env, extra_args, command)  # 5. role init
    except BaseException:
        procs.terminate_children()
        raise
    procs.restore_signal_handlers()
    roles.execute(launch)                                             # 6. exec
