"""One logger for the runtime: single lines on stderr, secret values masked.

Every value resolved from a secret store is registered with `mask()`; the
filter replaces it wherever it would appear, as a second line of defence
behind the rule that values are never formatted into messages at all.
"""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import urlsplit, urlunsplit

_MASK = "****"
_masked: set[str] = set()
# Values shorter than this are not masked: masking "1" or "true" would make
# logs unreadable and protects nothing.
_MIN_MASK_LEN = 4


def mask(value: str | None) -> None:
    if value and len(value) >= _MIN_MASK_LEN:
        _masked.add(value)


def redact(text: str) -> str:
    for value in sorted(_masked, key=len, reverse=True):
        if value in text:
            text = text.replace(value, _MASK)
    return text


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")


def mask_url(url: str) -> str:
    """Return URL with any password replaced, for progress and error lines."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        userinfo = f"{parts.username or ''}:{_MASK}@"
        return urlunsplit((parts.scheme, userinfo + host, parts.path, parts.query, ""))
    except ValueError:
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{_MASK}@", url)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{_MASK}@", redact(message))
        record.args = None
        return True


def get_logger() -> logging.Logger:
    logger = logging.getLogger("airflow-ecs")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("airflow-ecs %(levelname)s %(message)s"))
        handler.addFilter(_RedactingFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


log = get_logger()
