"""A throwaway PostgreSQL server: Debian's binaries, a temp data dir, 127.0.0.1, a free port.

Used by the tests (trading_assets_tests/servers/postgres.py wraps it: missing binaries skip a test there)
and by `trading-assets bench backfill --store ducklake`, so it imports no test framework. Usage::

    with postgres_server() as server:
        psycopg2.connect(server.dsn)
        lake_dsn = create_database(server, "ta_lake")

The server is stopped (``pg_ctl stop -m fast``) and its directory removed when the block exits, also when
the block raises. PostgreSQL refuses to run as root; as root the server runs as the ``postgres`` system user
that Debian's package creates (or ``nobody`` where that user is missing), through ``setpriv`` (util-linux)
or ``runuser``. Missing binaries raise `PostgresUnavailableError` saying what to install.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "apt-get install -y postgresql (Debian/Ubuntu: provides /usr/lib/postgresql/<version>/bin)"
_START_ATTEMPTS = 3
_TIMEOUT_S = 60


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL's server binaries are not installed, or there is no account to run them as."""


@dataclass(frozen=True)
class PostgresServer:
    """Connection facts of a running throwaway server (the user is its superuser)."""

    host: str
    port: int
    user: str
    password: str
    db_name: str
    base_dir: Path

    @property
    def dsn(self) -> str:
        """libpq keyword DSN (psycopg2.connect accepts it)."""
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.db_name}"
        )

    def dsn_for(self, db_name: str, with_password: bool = True) -> str:
        """The libpq DSN of another database of this server (without the password: for PGPASSWORD)."""
        dsn = f"host={self.host} port={self.port} user={self.user} dbname={db_name}"
        return f"{dsn} password={self.password}" if with_password else dsn

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.db_name}"

    def env(self, prefix: str = "TA_PG_") -> dict[str, str]:
        """The connection as environment variables: TA_PG_HOST, _PORT, _USER, _PASSWORD, _DB."""
        return {
            f"{prefix}HOST": self.host,
            f"{prefix}PORT": str(self.port),
            f"{prefix}USER": self.user,
            f"{prefix}PASSWORD": self.password,
            f"{prefix}DB": self.db_name,
        }


def find_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL bin directory holding initdb, pg_ctl and postgres, or None."""
    candidates = []
    for directory in glob.glob(BIN_GLOB):
        path = Path(directory)
        if all(os.access(path / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            version = path.parent.name
            candidates.append((float(version) if version.replace(".", "", 1).isdigit() else 0.0, path))
    return max(candidates)[1] if candidates else None


def require_bin_dir() -> Path:
    """find_bin_dir(), or `PostgresUnavailableError` naming what to install."""
    bin_dir = find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    raise PostgresUnavailableError(missing_binaries_message())


def missing_binaries_message() -> str:
    return (
        f"PostgreSQL server binaries not found at {BIN_GLOB}/{{initdb,pg_ctl,postgres}}; "
        f"install: {INSTALL_HINT}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (start retries if another process takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailableError(
        "running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL"
    )


def _as_account(account: pwd.struct_passwd | None, command: Sequence[str]) -> list[str]:
    if account is None:
        return list(command)
    if shutil.which("setpriv"):  # execs the command: its pid is the pid we started
        return [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--init-groups",
            *command,
        ]
    return ["runuser", "-u", account.pw_name, "--", *command]


def _run(account: pwd.struct_passwd | None, command: Sequence[str], cwd: Path) -> None:
    result = subprocess.run(
        _as_account(account, command),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}\n{output}")


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _stop(
    process: subprocess.Popen[bytes], account: pwd.struct_passwd | None, bin_dir: Path, data_dir: Path
) -> None:
    """pg_ctl stop -m fast, then reap the postmaster; SIGQUIT/SIGKILL it if it does not go."""
    if process.poll() is None:
        try:
            _run(
                account,
                [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "stop", "-m", "fast", "-w"],
                data_dir.parent,
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            process.send_signal(signal.SIGQUIT)  # immediate shutdown
    try:
        process.wait(timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=_TIMEOUT_S)


def _wait_ready(process: subprocess.Popen[bytes], server: PostgresServer, log: Path) -> bool:
    """True once the server accepts a password login on TCP; False if it exited (e.g. port taken)."""
    import psycopg2

    deadline = time.monotonic() + _TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            psycopg2.connect(
                host=server.host,
                port=server.port,
                user=server.user,
                password=server.password,
                dbname="postgres",
            ).close()
            return True
        except psycopg2.OperationalError:
            time.sleep(0.05)
    raise RuntimeError(f"PostgreSQL did not accept connections within {_TIMEOUT_S} s:\n{_log_tail(log)}")


def create_database(server: PostgresServer, db_name: str) -> str:
    """Create database `db_name` on the server (a name of letters, digits and _); its DSN with password."""
    import psycopg2

    if not db_name.replace("_", "").isalnum():
        raise ValueError(f"database name {db_name!r}: use letters, digits and _")
    connection = psycopg2.connect(
        host=server.host, port=server.port, user=server.user, password=server.password, dbname="postgres"
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{db_name}"')
    finally:
        connection.close()
    return server.dsn_for(db_name)


@contextmanager
def postgres_server(db_name: str = "dagster", user: str = "ta_test") -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL server on 127.0.0.1 with database `db_name`; stop and delete it on exit.

    Authentication is scram-sha-256 with a random password for `user` (the superuser), so clients must
    really send the credentials. fsync is off: the data is thrown away anyway.
    """
    bin_dir = require_bin_dir()
    account = _server_account()
    base_dir = Path(tempfile.mkdtemp(prefix="ta-postgres-"))
    data_dir, socket_dir, log = base_dir / "data", base_dir / "socket", base_dir / "server.log"
    password = secrets.token_hex(16)
    process: subprocess.Popen[bytes] | None = None
    try:
        socket_dir.mkdir()
        password_file = base_dir / "password"
        password_file.write_text(password + "\n")
        if account is not None:
            for path in (base_dir, socket_dir, password_file):
                os.chown(path, account.pw_uid, account.pw_gid)
        initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", user, f"--pwfile={password_file}"]
        _run(
            account, [*initdb, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"], base_dir
        )
        password_file.unlink()
        for attempt in range(1, _START_ATTEMPTS + 1):
            server = PostgresServer("127.0.0.1", free_port(), user, password, db_name, base_dir)
            # The postmaster runs in the foreground as our child (setpriv execs it, so the pid is ours to
            # reap): a daemonized one (pg_ctl start) is re-parented to pid 1, which may never reap it.
            command = [str(bin_dir / "postgres"), "-D", str(data_dir), "-c", "listen_addresses=127.0.0.1"]
            command += ["-c", f"port={server.port}", "-c", f"unix_socket_directories={socket_dir}"]
            command += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            with log.open("ab") as log_file:
                process = subprocess.Popen(
                    _as_account(account, command), cwd=base_dir, stdout=log_file, stderr=subprocess.STDOUT
                )
            if _wait_ready(process, server, log):
                break
            process.wait(timeout=_TIMEOUT_S)
            process = None
            if attempt == _START_ATTEMPTS:
                raise RuntimeError(f"PostgreSQL did not start {attempt} times:\n{_log_tail(log)}")
        create_database(server, server.db_name)
        yield server
    finally:
        try:
            if process is not None:
                _stop(process, account, bin_dir, data_dir)
        finally:
            shutil.rmtree(base_dir, ignore_errors=True)
