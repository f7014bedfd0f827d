"""One logger for the runtime: single lines on stderr, secret values masked.

Every value resolved from a secret store is registered with `mask()`; the
filter replaces it wherever it would appear, as a second line of defence
behind the rule that values are never formatted into messages at all.
"""

from __future__ import annotations

import logging
import re
import sys

_MASK = "****"
_masked: set[str] = set()
# Values shorter than this are not masked: masking "1" or "true" would make
# logs unreadable and protects nothing.
_MIN_MASK_LEN = 4


def mask(value: str | None) -> None:
    if value and len(value) >= _MIN_MASK_LEN:
        _masked.add(value)


def redact(text: str) -> str:
    """TEXT with every registered secret value and every password in a URL masked.

    Never raises: a message about a failure must not fail itself.
    """
    try:
        text = str(text)
        for value in sorted(_masked, key=len, reverse=True):
            if value in text:
                text = text.replace(value, _MASK)
        return _TOKEN.sub(lambda m: _mask_token(m[0]), text)
    except Exception:  # noqa: BLE001 - see the docstring; nothing of the text is shown then
        return _MASK


# Masking works on the raw string, not on urllib.parse's reading of it: a password
# with an unescaped '/', '?', '#' or '@' makes urlsplit put part of it in the path
# or query (redis://:pa/ss@host/0 has the "password" "pa"), and a malformed URL
# (a bad port, an unclosed '[') makes urlsplit raise. The rules below take the
# credentials to end at the last '@', which hides the whole password whatever it
# holds; a path that itself contains '@' is masked too far, which only costs
# readability.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:password|passwd|pwd|sslpassword|token|access_token|secret)=)[^&#;\s]*")
_TOKEN = re.compile(r"\S*[@=]\S*")  # whitespace-separated words that may hold credentials


def _mask_userinfo(rest: str, scp_like: bool, bare_user_is_secret: bool = False) -> str:
    """REST (what follows 'scheme://', or a scp-like 'user:pw@host:path') with the
    password between the first ':' and the last '@' of the credentials masked.

    With BARE_USER_IS_SECRET, credentials without a ':' are masked whole: over
    HTTP(S), git hosts take a token as the user name alone
    (https://TOKEN@github.com/org/repo.git), while a bare user name in the other
    schemes (git@host, postgresql://airflow@db) is a name worth showing."""
    if scp_like:
        # user:TOKEN@host:repo.git - the credentials end at the last '@' before the
        # host's ':' (git@host:org/repo.git has no password: nothing to mask).
        at = rest.rfind("@", 0, rest.rfind(":"))
        if at < 0:
            at = rest.rfind("@")
    else:
        at = rest.rfind("@")
    if at < 0:
        return rest
    colon = rest.find(":", 0, at)
    if colon < 0:
        return _MASK + rest[at:] if bare_user_is_secret and at > 0 else rest
    return rest[:colon + 1] + _MASK + rest[at:]


def _mask_token(token: str) -> str:
    token = _QUERY_SECRET.sub(lambda m: m[1] + _MASK, token)
    if "@" not in token:
        return token
    scheme = _SCHEME.search(token)
    if scheme:
        http = token[scheme.start():scheme.end()].lower() in ("http://", "https://")
        return token[:scheme.end()] + _mask_userinfo(token[scheme.end():], scp_like=False,
                                                     bare_user_is_secret=http)
    return _mask_userinfo(token, scp_like=True)


def mask_url(url: str) -> str:
    """URL with its password masked, for progress and error lines.

    Any scheme, a scp-like git address (user:TOKEN@host:repo.git), and URLs that
    don't parse (an unescaped '/' or '@' in the password, a bad port) alike; a
    password in the query (?password=...) too. Never raises.
    """
    try:
        url = str(url)
        url = _QUERY_SECRET.sub(lambda m: m[1] + _MASK, url)
        return _mask_token(url)
    except Exception:  # noqa: BLE001 - see the docstring; nothing of the URL is shown then
        return _MASK


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not hide the line
            message = str(record.msg)
        record.msg = redact(message)
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
