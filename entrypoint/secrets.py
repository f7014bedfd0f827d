"""Secrets: Parameter Store paths, `ssm:`/`secretsmanager:` references and `NAME_FILE`
files, resolved into the environment the role is exec'd with.

Sources, in the order they are applied:

1. `NAME_FILE=/path` sets `NAME` from the file (one trailing newline removed).
   Only for names starting with `AIRFLOW`, and never for Airflow's own options
   whose names end in `_FILE` (below) nor for our settings that hold a path
   (config.PATH_SETTINGS). `NAME` and `NAME_FILE` both set is an
   error. The `_FILE` variable is removed. The file must be a regular file
   (a symlink to one is fine, as Docker and Kubernetes mount secrets) of at
   most FILE_MAX_BYTES of UTF-8 text without NUL bytes: a device (/dev/zero)
   or a FIFO would never end or block start-up, and an environment variable
   can hold neither a NUL nor undecodable bytes. Anything else is a secrets
   error naming the variable and the path, never the content.
2. A value `ssm:/NAME` (or `ssm:` + a parameter ARN) is replaced by that
   parameter's value (SecureString decrypted); `secretsmanager:NAME_OR_ARN`,
   optionally `#json-key`, by that secret's string (or the key of its JSON).
3. `AIRFLOW_ECS_SSM_PATH`: every parameter under the path (recursive, all
   pages) becomes a variable named after its last path segment. A parameter
   whose value is itself a reference is resolved as in 2 (once, not
   recursively), so a Secrets Manager pointer can live in Parameter Store.
   `AIRFLOW_ECS_SSM_ROLE_PATH`, a second path outside the first, is loaded the
   same way: what one role's task needs and the others must not read.

Precedence: a variable set explicitly in the environment (including values
ECS injects from a task definition's `secrets`, and the references and files
of 1 and 2) wins over a parameter of the same name under the path; the
parameter is skipped with a log line naming it. Two parameters under the paths
with the same last segment are an error.

Values are never logged, never put in an exception message, and every one is
registered with `log.mask()`. When nothing needs resolving, botocore is not
imported and no client is created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from entrypoint.config import PATH_SETTINGS, Settings
from entrypoint.errors import ConfigError, SecretsError
from entrypoint.log import log, mask

SSM_PREFIX = "ssm:"
SM_PREFIX = "secretsmanager:"
GET_PARAMETERS_BATCH = 10  # the API's limit on names per GetParameters call
# The largest NAME_FILE read: the largest secret the AWS stores hold (a Secrets
# Manager secret) with room to spare; keys, passwords and URLs are far smaller.
FILE_MAX_BYTES = 64 * 1024

# Airflow 3.3 options whose names end in "_file" (from airflow/config_templates/
# config.yml and the providers' option lists): their _FILE is part of the name,
# not our file convention. tests/unit/test_secrets.py checks this list against
# the installed Airflow.
AIRFLOW_FILE_OPTIONS = frozenset({
    "AIRFLOW__API__SSL_CA_FILE",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "AIRFLOW__FAB__CONFIG_FILE",
})

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAM_NAME = re.compile(r"^/[A-Za-z0-9_.\-/]+$")
_PARAM_ARN = re.compile(r"^arn:aws[\w-]*:ssm:[\w-]+:\d{12}:parameter(/[A-Za-z0-9_.\-/]+)$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9/_+=.@\-:]+$")


@dataclass(frozen=True)
class Resolved:
    env: dict[str, str]
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    service: str  # "ssm" | "secretsmanager"
    target: str  # parameter name, or secret name/ARN
    key: str | None = None  # JSON key of a secret

    @property
    def source(self) -> str:
        if self.service == "ssm":
            return f"ssm:{self.target}"
        return f"secretsmanager:{self.target}" + (f"#{self.key}" if self.key else "")


def parse_reference(name: str, value: str) -> Reference | None:
    """The reference in a variable's value, None for a plain value; ConfigError if malformed."""
    if value.startswith(SSM_PREFIX):
        target = value[len(SSM_PREFIX):]
        arn = _PARAM_ARN.match(target)
        if arn:
            return Reference("ssm", target)
        if not _PARAM_NAME.match(target):
            raise ConfigError(f"invalid setting: {name} holds a malformed ssm: reference; use "
                              "ssm:/full/parameter/name (absolute, letters, digits and _.-/ "
                              "only) or ssm:arn:aws:ssm:REGION:ACCOUNT:parameter/NAME")
        return Reference("ssm", target)
    if value.startswith(SM_PREFIX):
        target, _, key = value[len(SM_PREFIX):].partition("#")
        if not target or not _SECRET_ID.match(target) or ("#" in value and not key):
            raise ConfigError(f"invalid setting: {name} holds a malformed secretsmanager: "
                              "reference; use secretsmanager:NAME_OR_ARN or "
                              "secretsmanager:NAME_OR_ARN#json-key")
        return Reference("secretsmanager", target, key or None)
    return None


def _file_target(name: str) -> str | None:
    if not name.endswith("_FILE") or not name.startswith("AIRFLOW"):
        return None
    if name in AIRFLOW_FILE_OPTIONS or name in PATH_SETTINGS:
        return None
    return name[: -len("_FILE")]


def read_secret_file(name: str, path: Path) -> str:
    """The content of the file variable `name` names (one trailing newline removed).

    SecretsError naming name and path, never the content, if it is not a regular
    file of at most FILE_MAX_BYTES of UTF-8 text without NUL bytes.
    """
    import os
    import stat

    where = f"{name}={str(path)!r}"
    try:
        # O_NONBLOCK: opening a FIFO without a writer would block start-up.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "not a valid path"
        raise SecretsError(f"{where}: cannot read the file ({reason}); point {name} at the "
                           "secret's file, readable by this container's user") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise SecretsError(f"{where}: the path is {kind}; point {name} at a regular file "
                               "holding the secret")
        data = b""
        while len(data) <= FILE_MAX_BYTES:
            chunk = os.read(fd, FILE_MAX_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise SecretsError(f"{where}: cannot read the file ({exc.strerror}); point {name} at "
                           "the secret's file, readable by this container's user") from None
    finally:
        os.close(fd)
    if len(data) > FILE_MAX_BYTES:
        raise SecretsError(f"{where}: the file is larger than {FILE_MAX_BYTES // 1024} KiB, "
                           f"too large for a secret; point {name} at the file holding only "
                           "the secret's value")
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretsError(f"{where}: the file is not UTF-8 text; an environment variable "
                           "holds text: store the secret as text (base64-encode binary keys)"
                           ) from None
    if "\0" in value:
        raise SecretsError(f"{where}: the file contains a NUL byte, which an environment "
                           "variable cannot hold; store the secret as text (base64-encode "
                           "binary keys)")
    return value[:-1] if value.endswith("\n") else value


class _Aws:
    """botocore clients, created on first use only.

    botocore rather than boto3: boto3's import alone pulls in s3transfer
    (BENCHMARKS.md, import costs: boto3 against botocore.session).
    """

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import botocore.session
            from botocore.config import Config

            region = self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION")
            if not region:
                raise SecretsError("set AWS_REGION: secrets must be resolved from AWS, and no "
                                   "region is configured (ECS sets it on Fargate; set it in the "
                                   "task definition's environment otherwise)")
            suffix = "SSM" if service == "ssm" else "SECRETS_MANAGER"
            endpoint = (self.env.get(f"AWS_ENDPOINT_URL_{suffix}")
                        or self.env.get("AWS_ENDPOINT_URL") or None)
            config = Config(
                # botocore's standard retry mode backs off with jitter on throttling.
                retries={"mode": "standard",
                         "max_attempts": int(self.env.get("AWS_MAX_ATTEMPTS") or 8)},
                connect_timeout=3, read_timeout=10,
            )
            session = botocore.session.get_session()
            self._clients[service] = session.create_client(
                service, region_name=region, endpoint_url=endpoint, config=config)
        return self._clients[service]


def _aws_failure(what: str, exc: Exception) -> SecretsError:
    """A SecretsError for exc that names what was asked for, never a value."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("AccessDeniedException", "AccessDenied", "KMSAccessDeniedException",
                    "UnrecognizedClientException"):
            return SecretsError(f"access denied to {what} ({code}): grant the task role "
                                "read access (and kms:Decrypt for SecureString)")
        if code in ("ThrottlingException", "TooManyRequestsException", "Throttling"):
            return SecretsError(f"throttled reading {what} after retries ({code}); raise "
                                "AWS_MAX_ATTEMPTS or stagger task starts")
        if code in ("ParameterNotFound", "ResourceNotFoundException"):
            return SecretsError(f"missing: {what} does not exist")
        return SecretsError(f"reading {what} failed: {code}")
    if isinstance(exc, NoCredentialsError):
        return SecretsError(f"no AWS credentials to read {what}: give the ECS task a task role")
    if isinstance(exc, EndpointConnectionError | ReadTimeoutError):
        return SecretsError(f"could not reach AWS to read {what}: {type(exc).__name__}")
    return SecretsError(f"reading {what} failed: {type(exc).__name__}")


def _fetch_path(aws: _Aws, path: str) -> dict[str, str]:
    """Every parameter under path: {full name: value}."""
    from botocore.exceptions import BotoCoreError, ClientError

    found: dict[str, str] = {}
    kwargs: dict[str, Any] = {"Path": path, "Recursive": True, "WithDecryption": True,
                              "MaxResults": 10}
    try:
        while True:
            page = aws.client("ssm").get_parameters_by_path(**kwargs)
            for param in page.get("Parameters", []):
                found[param["Name"]] = param["Value"]
            # A page may be empty and still carry a NextToken: follow it.
            token = page.get("NextToken")
            if not token:
                return found
            kwargs["NextToken"] = token
    except (ClientError, BotoCoreError) as exc:
        raise _aws_failure(f"the parameters under {path}", exc) from None


def _fetch_parameters(aws: _Aws, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Values by name, and the names that don't exist; batched by the API's limit."""
    from botocore.exceptions import BotoCoreError, ClientError

    values: dict[str, str] = {}
    missing: list[str] = []
    for start in range(0, len(names), GET_PARAMETERS_BATCH):
        batch = names[start:start + GET_PARAMETERS_BATCH]
        try:
            reply = aws.client("ssm").get_parameters(Names=batch, WithDecryption=True)
        except (ClientError, BotoCoreError) as exc:
            raise _aws_failure("parameter(s) " + ", ".join(batch), exc) from None
        for param in reply.get("Parameters", []):
            values[param["Name"]] = param["Value"]
            if param.get("ARN"):
                values[param["ARN"]] = param["Value"]
        missing.extend(reply.get("InvalidParameters", []))
    return values, missing


def _fetch_secret(aws: _Aws, secret_id: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        reply = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except (ClientError, BotoCoreError) as exc:
        raise _aws_failure(f"secret {secret_id}", exc) from None
    if "SecretString" not in reply:
        raise SecretsError(f"secret {secret_id} holds binary data; store it as a string")
    return cast(str, reply["SecretString"])


def _secret_key(name: str, ref: Reference, text: str) -> str:
    if ref.key is None:
        return text
    import json  # here, like every import a start-up that needs none of it can skip

    try:
        document = json.loads(text)
    except ValueError:
        raise SecretsError(f"{name}: secret {ref.target} is not JSON, so it has no key "
                           f"{ref.key!r}; drop '#{ref.key}' or store a JSON object") from None
    if not isinstance(document, dict) or ref.key not in document:
        raise SecretsError(f"{name}: secret {ref.target} has no key {ref.key!r}")
    value = document[ref.key]
    return value if isinstance(value, str) else json.dumps(value)


def _resolve_references(aws: _Aws, refs: dict[str, Reference]) -> dict[str, str]:
    """Values for every variable in refs; one SecretsError naming every missing one."""
    ssm_names = sorted({r.target for r in refs.values() if r.service == "ssm"})
    values: dict[str, str] = {}
    problems: list[str] = []
    if ssm_names:
        found, missing = _fetch_parameters(aws, ssm_names)
        for name, ref in sorted(refs.items()):
            if ref.service == "ssm":
                if ref.target in found:
                    values[name] = found[ref.target]
                elif ref.target in missing:
                    problems.append(f"{name}: parameter {ref.target} does not exist")
                else:
                    problems.append(f"{name}: parameter {ref.target} was not returned")
    secrets_cache: dict[str, str] = {}
    for name, ref in sorted(refs.items()):
        if ref.service != "secretsmanager":
            continue
        try:
            if ref.target not in secrets_cache:
                secrets_cache[ref.target] = _fetch_secret(aws, ref.target)
            values[name] = _secret_key(name, ref, secrets_cache[ref.target])
        except SecretsError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise SecretsError("could not resolve:\n" + "\n".join(f"  - {p}" for p in problems))
    return values


def resolve(env: Mapping[str, str], settings: Settings) -> Resolved:
    """Resolve every source above into a copy of env."""
    out = dict(env)
    sources: dict[str, str] = {}
    problems: list[str] = []
    file_problems: list[str] = []

    for name in sorted(env):
        target = _file_target(name)
        if target is None:
            continue
        if target in env:
            problems.append(f"invalid setting: both {target} and {name} are set; set only one")
            continue
        path = Path(env[name])
        try:
            value = read_secret_file(name, path)
        except SecretsError as exc:
            file_problems.append(str(exc))
            continue
        mask(value)
        out[target] = value
        del out[name]
        sources[target] = f"file:{path}"

    refs: dict[str, Reference] = {}
    for name, value in sorted(out.items()):
        try:
            ref = parse_reference(name, value)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if ref:
            refs[name] = ref
    if problems:
        raise ConfigError(problems)
    if file_problems:
        raise SecretsError("\n".join(f"  - {p}" for p in file_problems))

    paths = [p for p in (settings.ssm_path, settings.ssm_role_path) if p]
    if len(paths) == 2 and (paths[0].startswith(paths[1]) or paths[1].startswith(paths[0])):
        raise ConfigError([f"invalid setting: AIRFLOW_ECS_SSM_ROLE_PATH={paths[1]} and "
                           f"AIRFLOW_ECS_SSM_PATH={paths[0]} overlap; give the role's "
                           "parameters a path of their own, outside the shared one"])
    if not refs and not paths:
        return Resolved(env=out, sources=sources)

    aws = _Aws(env)
    if paths:
        by_segment: dict[str, str] = {}
        fetched = {name: value for path in paths
                   for name, value in _fetch_path(aws, path).items()}
        for full_name, value in sorted(fetched.items()):
            segment = full_name.rsplit("/", 1)[-1]
            if not _ENV_NAME.match(segment):
                problems.append(f"parameter {full_name}: its last segment {segment!r} is not a "
                                "valid environment variable name (letters, digits, _)")
                continue
            if segment in by_segment:
                problems.append(f"parameters {by_segment[segment]} and {full_name} both "
                                f"define {segment}; keep one")
                continue
            by_segment[segment] = full_name
            if segment in env or segment in sources:
                log.info("%s is set explicitly; parameter %s is not used", segment, full_name)
                continue
            try:
                ref = parse_reference(segment, value)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if ref:
                refs[segment] = ref
            else:
                mask(value)
                out[segment] = value
            sources[segment] = f"ssm:{full_name}"
        if problems:
            raise SecretsError("\n".join(f"  - {p}" for p in problems))

    for name, value in _resolve_references(aws, refs).items():
        mask(value)
        out[name] = value
        sources[name] = refs[name].source if name not in sources else \
            f"{sources[name]} -> {refs[name].source}"
    log.info("resolved %d secret(s)", len(sources))
    return Resolved(env=out, sources=sources)


def resolve_reference(value: str, env: Mapping[str, str], name: str = "value") -> str:
    """Resolve one value that may be a reference (used to re-read rotating credentials)."""
    ref = parse_reference(name, value)
    if ref is None:
        return value
    resolved = _resolve_references(_Aws(env), {name: ref})[name]
    mask(resolved)
    return resolved
