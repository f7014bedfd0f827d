"""Failure classes and the exit code each one ends the process with.

The codes are part of the CLI contract (listed in the README): ECS shows a
stopped task's exit code, so it alone must tell an operator which phase failed.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_CONFIG = 78
EXIT_SECRETS = 79
EXIT_DAG_SYNC = 80
EXIT_WAIT = 81
EXIT_MIGRATION = 82
EXIT_KEY_MISMATCH = 83
EXIT_DEPLOY = 84
EXIT_TERMINATED = 143


class EntrypointError(Exception):
    """An operator-facing failure. Its message must never contain a secret value."""

    exit_code = EXIT_INTERNAL
    label = "error"


class ConfigError(EntrypointError):
    exit_code = EXIT_CONFIG
    label = "configuration"

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(f"  - {p}" for p in self.problems))


class SecretsError(EntrypointError):
    exit_code = EXIT_SECRETS
    label = "secrets"


class DagSyncError(EntrypointError):
    exit_code = EXIT_DAG_SYNC
    label = "DAG sync"


class WaitTimeout(EntrypointError):
    exit_code = EXIT_WAIT
    label = "dependency wait"


class MigrationError(EntrypointError):
    exit_code = EXIT_MIGRATION
    label = "migration"


class KeyMismatchError(EntrypointError):
    exit_code = EXIT_KEY_MISMATCH
    label = "shared keys"


class DeployError(EntrypointError):
    exit_code = EXIT_DEPLOY
    label = "deploy"


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived during start-up.

    A BaseException, like KeyboardInterrupt, so that no library's `except
    Exception` (botocore's and urllib3's retry loops among them) can swallow it
    and keep the entrypoint waiting.
    """

    exit_code = EXIT_TERMINATED
    label = "terminated"
