"""Broker and database URLs: parsing, masking, and the password mistakes users make.

A password with an unescaped reserved character (`@ / : # ? %`) makes a URL
parse into the wrong host, port or path, and the failure shows up much later
as "could not translate host name" or a connection to the wrong place. The
check here recognises the shapes such URLs take and says how to
percent-encode the password, without ever printing it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_ENCODE_HINT = ("percent-encode the password: python3 -c \"import urllib.parse, getpass; "
                "print(urllib.parse.quote(getpass.getpass(), safe=''))\" "
                "(e.g. '@' becomes %40, '/' %2F, '#' %23, ':' %3A)")


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    path: str

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


# The URL schemes each kind of setting may use (before any '+driver', after any 'db+').
DB_SCHEMES = ("postgresql", "mysql", "sqlite")
BROKER_SCHEMES = ("redis", "rediss", "sentinel", "sqs", "amqp", "amqps", "pyamqp")
RESULT_SCHEMES = ("postgresql", "mysql", "sqlite", "redis", "rediss", "sentinel")

_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432,
                  "mysql": 3306}


def parse(url: str) -> Endpoint:
    """Parse URL (raises ValueError with a message free of the password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        # urllib's only complaints here are an unclosed '[' or ']' (an IPv6 address) and
        # characters that NFKC-normalise to a URL delimiter.
        raise ValueError("the host part does not parse (an unclosed '[' of an IPv6 address, "
                         "or an unescaped '[', ']', '@' or ':' in the password?)") from None
    scheme = parts.scheme.split("+")[-1] if parts.scheme.startswith("db+") else parts.scheme
    base = scheme.split("+")[0]
    try:
        port = parts.port
    except ValueError:
        port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2].rpartition(":")[2]
        if port_text.isascii() and port_text.isdigit():
            raise ValueError("the port is out of range (1-65535)") from None
        raise ValueError("the port is not a number (an unescaped ':' or '@' in the password?)"
                         ) from None
    host = parts.hostname or ""
    if not host:
        raise ValueError("no host in the URL")
    return Endpoint(
        scheme=base,
        host=host,
        port=port or _DEFAULT_PORTS.get(base, 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=parts.path,
    )


def problems_in_url(name: str, url: str, schemes: Sequence[str] = ()) -> list[str]:
    """Problems with the URL in variable `name`, in words that never include the password.

    `schemes`, when given, are the URL schemes the variable may use (the part before
    any '+driver', after any 'db+'); another one is a problem.
    """
    if "://" not in url:
        return [f"invalid setting: {name} is not a URL (no scheme://), e.g. "
                "redis://:PASSWORD@host:6379/0 or postgresql+psycopg2://user:PASSWORD@host/db"]
    scheme = url.split("://", 1)[0].lower()
    base = scheme.removeprefix("db+").split("+")[0]
    if schemes and base not in schemes:
        shown = scheme if re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) else "(malformed)"
        hint = " (SQLAlchemy calls it postgresql://)" if base == "postgres" else ""
        return [f"invalid setting: {name}: unknown URL scheme {shown}{hint}; use one of "
                + ", ".join(f"{s}://" for s in schemes)]
    netloc = url.split("://", 1)[1]
    # Everything up to the first '/', '?' or '#' is the authority. A password
    # holding one of those characters cuts the authority short.
    authority = re.split(r"[/?#]", netloc, maxsplit=1)[0]
    rest = netloc[len(authority):]
    problems = []
    if "@" in rest.split("?", 1)[0]:
        problems.append(f"invalid setting: {name}: the password seems to contain '/', '?' or "
                        f"'#', which ends the host part of a URL; {_ENCODE_HINT}")
    elif authority.count("@") > 1:
        problems.append(f"invalid setting: {name}: the user or password contains an unescaped "
                        f"'@'; {_ENCODE_HINT}")
    else:
        try:
            endpoint = parse(url)
        except ValueError as exc:
            problems.append(f"invalid setting: {name}: {exc}; {_ENCODE_HINT}")
        else:
            userinfo = authority.rsplit("@", 1)[0] if "@" in authority else ""
            if "%" in userinfo and re.search(r"%(?![0-9A-Fa-f]{2})", userinfo):
                problems.append(f"invalid setting: {name}: the password contains a '%' that "
                                f"is not a percent-escape; {_ENCODE_HINT}")
            if endpoint.scheme in ("redis", "rediss") and endpoint.path not in ("", "/"):
                db = endpoint.path.strip("/")
                if not db.isdigit():
                    problems.append(f"invalid setting: {name}: the Redis database (the path "
                                    "after the host) must be a number, e.g. /0; "
                                    f"{_ENCODE_HINT}")
    return problems
