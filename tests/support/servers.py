"""Real servers for the tests, each on 127.0.0.1 on a free port.

Redis and PostgreSQL come from Debian's packages (`.ci/run` installs them);
moto's standalone server from PyPI. Each helper returns a handle with its URL
and a `stop()`; fixtures in conftest.py start and stop them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listens(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), 0.2):
        return True


def wait_port(port: int, timeout: float = 20.0) -> None:
    wait_until(lambda: _listens(port), f"a server listening on 127.0.0.1:{port}",
               timeout=timeout, interval=0.05, ignoring=OSError)


@dataclass
class Server:
    port: int
    proc: subprocess.Popen | None
    workdir: Path
    password: str = ""
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop the server for good and remove its folder (a restart uses stop())."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class RedisServer(Server):
    def url(self, db: int = 0, password: str | None = None, user: str = "") -> str:
        pw = self.password if password is None else password
        auth = f"{user}:{pw}@" if pw else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        if self.extra.get("persistent"):  # saves its data when stopped, loads it when started
            args += ["--save", "3600 1"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self


def start_redis(password: str = "", port: int | None = None,
                persistent: bool = False) -> RedisServer:
    workdir = Path(tempfile.mkdtemp(prefix="redis-"))
    return RedisServer(port=port or free_port(), proc=None, workdir=workdir,
                       password=password, extra={"persistent": persistent}).start()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package")
    return path


@dataclass
class PostgresServer(Server):
    user: str = "airflow"
    database: str = "airflow"

    def url(self, driver: str = "postgresql+psycopg2", password: str | None = None,
            database: str | None = None) -> str:
        pw = self.password if password is None else password
        return (f"{driver}://{self.user}:{pw}@127.0.0.1:{self.port}/"
                f"{database or self.database}")

    def _demote(self):
        if os.geteuid() != 0:
            return None
        entry = pwd.getpwnam("postgres")

        def demote() -> None:
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

        return demote

    def start(self) -> PostgresServer:
        data = self.workdir / "data"
        if not data.exists():
            pwfile = self.workdir / "pw"
            pwfile.write_text(self.password)
            if os.geteuid() == 0:
                entry = pwd.getpwnam("postgres")
                os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            subprocess.run(
                [_pg_bin("initdb"), "-D", str(data), "-U", self.user, "--pwfile", str(pwfile),
                 "-A", "scram-sha-256", "--no-sync"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                preexec_fn=self._demote(),
            )
        self.proc = subprocess.Popen(
            [_pg_bin("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.workdir), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=self.log_path.open("ab"), preexec_fn=self._demote(),
        )
        wait_port(self.port, 30)
        # The port opens before the server accepts logins; poll with a real login.
        wait_until(self._accepts_login, "postgres to accept logins", timeout=30)
        return self

    def _accepts_login(self) -> bool:
        env = dict(os.environ, PGPASSWORD=self.password)
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d",
             "postgres", "-Atc", "select 1"], env=env, capture_output=True,
        ).returncode == 0

    @property
    def log_path(self) -> Path:
        """The server's own log (its stderr): what an operator would read."""
        return self.workdir / "postgres.log"

    def psql(self, sql: str, database: str | None = None) -> str:
        env = dict(os.environ, PGPASSWORD=self.password)
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d",
             database or "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            env=env, capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')


def start_postgres(password: str = "pg-test-pw") -> PostgresServer:
    workdir = Path(tempfile.mkdtemp(prefix="pg-"))
    server = PostgresServer(port=free_port(), proc=None, workdir=workdir, password=password)
    server.start()
    server.create_database(server.database)
    return server


@dataclass
class MotoServer(Server):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


def start_moto() -> MotoServer:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="moto-"))
    proc = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_port(port, 30)
    return MotoServer(port=port, proc=proc, workdir=workdir)


LDAP_SUFFIX = "dc=example,dc=com"
LDAP_PEOPLE = f"ou=people,{LDAP_SUFFIX}"
LDAP_GROUPS = f"ou=groups,{LDAP_SUFFIX}"
LDAP_READER = f"cn=reader,{LDAP_SUFFIX}"


@dataclass
class LdapServer(Server):
    """Debian's slapd with the memberof overlay: users in ou=people, groupOfNames in
    ou=groups, each user's memberOf kept by the overlay, and a reader to bind as."""

    root_password: str = ""
    reader_password: str = ""

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> LdapServer:
        (self.workdir / "data").mkdir(exist_ok=True)
        conf = self.workdir / "slapd.conf"
        conf.write_text("\n".join([
            *(f"include /etc/ldap/schema/{name}.schema"
              for name in ("core", "cosine", "inetorgperson", "nis")),
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            "moduleload memberof",
            f"pidfile {self.workdir}/slapd.pid",
            "database mdb",
            f'suffix "{LDAP_SUFFIX}"',
            f'rootdn "cn=admin,{LDAP_SUFFIX}"',
            f"rootpw {self.root_password}",
            f"directory {self.workdir}/data",
            "maxsize 10485760",
            "overlay memberof",
            "memberof-group-oc groupOfNames",
            "memberof-member-ad member",
            "memberof-memberof-ad memberOf",
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by users read by * none",
            "",
        ]))
        # -d keeps slapd in the foreground (its log on stderr), so stop() can end it.
        self.proc = subprocess.Popen(
            ["slapd", "-d", "0", "-f", str(conf), "-h", self.url + "/"],
            stdout=subprocess.DEVNULL, stderr=self.log_path.open("ab"))
        wait_port(self.port, 20)
        self.add(f"""dn: {LDAP_SUFFIX}
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: {LDAP_READER}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: {self.reader_password}

dn: {LDAP_PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {LDAP_GROUPS}
objectClass: organizationalUnit
ou: groups
""")
        return self

    @property
    def log_path(self) -> Path:
        return self.workdir / "slapd.log"

    def add(self, ldif: str) -> None:
        subprocess.run(["ldapadd", "-x", "-H", self.url, "-D", f"cn=admin,{LDAP_SUFFIX}",
                        "-w", self.root_password], input=ldif, text=True, check=True,
                       capture_output=True, timeout=30)

    def add_user(self, uid: str, password: str) -> str:
        dn = f"uid={uid},{LDAP_PEOPLE}"
        self.add(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                 f"mail: {uid}@example.com\nuserPassword: {password}\n")
        return dn

    def add_group(self, name: str, members: list[str]) -> str:
        dn = f"cn={name},{LDAP_GROUPS}"
        self.add(f"dn: {dn}\nobjectClass: groupOfNames\ncn: {name}\n"
                 + "".join(f"member: {m}\n" for m in members))
        return dn


def start_ldap() -> LdapServer:
    import secrets

    workdir = Path(tempfile.mkdtemp(prefix="slapd-"))
    return LdapServer(port=free_port(), proc=None, workdir=workdir,
                      root_password=secrets.token_hex(12),
                      reader_password=secrets.token_hex(12)).start()


def airflow_env(postgres_server, database: str, home) -> dict:
    """Environment for real Airflow CLI calls against database on the test server."""
    postgres_server.create_database(database)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_server.url(database=database),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    }
