"""A real PostgreSQL (one server, no replication) and the real claims app over HTTP, for the
portal, the reviewer console, the API fuzzing and the browser tests. The lab's end-to-end tests
cover the same app across three sites; these need only one, and start in seconds."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from firebreak.lab import procs, runtime
from tests.conftest import ROOT

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="session")
def pg():
    """A PostgreSQL server on 127.0.0.1, run as the lab's user when we are root; yields the
    superuser DSN."""
    user = runtime.lab_user()
    python = runtime.runtime_python(user)
    bin_dir = Path(runtime.pg_bin_dir(python))
    home = Path(tempfile.mkdtemp(prefix="firebreak-pg-"))
    os.chmod(home, 0o711)
    password = secrets.token_urlsafe(16)
    (home / "pw").write_text(password)
    runtime.chown_tree(home, user)
    as_user = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--"] if user else []
    subprocess.run(as_user + [str(bin_dir / "initdb"), "-D", str(home / "data"), "-U", "postgres", "-A",
                              "scram-sha-256", "--pwfile", str(home / "pw"), "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    port = free_port()
    server = procs.spawn(as_user[:0] + [str(bin_dir / "postgres"), "-D", str(home / "data"), "-p", str(port),
                                        "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={home}",
                                        "-c", "fsync=off", "-c", "max_connections=200"],
                         site="test", component="postgres", lab_id="web-tests-" + home.name, log=home / "pg.log",
                         user=user)
    dsn = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 30
    import psycopg
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=1).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError("test PostgreSQL did not start:\n" + (home / "pg.log").read_text())
            time.sleep(0.2)
    try:
        yield {"superuser_dsn": dsn, "port": port, "pid": server.pid}
    finally:
        procs.terminate([server.pid], timeout=10)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def claims_db(pg):
    """The claims database, migrated, with the app's own role; yields the app's DSN."""
    from firebreak.claims.db import ensure_database, migrate
    app_password = secrets.token_urlsafe(16)
    ensure_database(pg["superuser_dsn"], app_password)
    dsn = f"postgresql://claims:{app_password}@127.0.0.1:{pg['port']}/claims"
    migrate(dsn)
    return dsn


@contextmanager
def serve_app(dsn: str, logdir: Path, **env_extra: str):
    """The claims app on a free port in its own process, over `dsn`; yields (url, process)."""
    port = free_port()
    env = dict(os.environ, FIREBREAK_SITE_NAME="pangyo", FIREBREAK_DSN=dsn, FIREBREAK_LOCAL_DSN=dsn,
               FIREBREAK_ANY_DSN=dsn, FIREBREAK_SESSION_SECRET=secrets.token_urlsafe(32),
               FIREBREAK_REFUSAL_DELAY="0",  # a test counting refusals would wait a second for each
               # CI runs these tests at nice 19 beside the lab tests: a group commit may stall past
               # the 1.5 s default, and a test of something else would read a 503
               FIREBREAK_WRITE_DEADLINE="5")
    env.update(env_extra)  # a test may override any of the above (a dead primary, say)
    with open(logdir / "app.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "firebreak.claims.serve", "--bind", f"127.0.0.1:{port}"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def claims_app(claims_db, tmp_path_factory):
    """The real app, served by uvicorn in its own process; yields its base URL and DSN."""
    logdir = tmp_path_factory.mktemp("app")
    with serve_app(claims_db, logdir, FIREBREAK_LEDGER=str(ROOT / "examples" / "ledger-2022.yaml"),
                   FIREBREAK_PORTAL_RATE="600") as (url, _):
        yield {"url": url, "dsn": claims_db, "log": logdir / "app.log"}


@contextmanager
def plain_etcd(label: str, site: str = "pangyo"):
    """A one-member etcd on free loopback ports, without TLS or users (the tests of what the
    agent and console do with its keys): yields its client URL, stops it and removes its data."""
    home = Path(tempfile.mkdtemp(prefix=f"firebreak-{label}-"))
    url, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    proc = procs.spawn([runtime.etcd_binary(), "--name", "c", "--data-dir", str(home / "data"),
                        "--listen-client-urls", url, "--advertise-client-urls", url,
                        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", f"c={peer}", "--log-level", "warn", "--logger", "zap"],
                       site=site, component="etcd", lab_id=f"{label}-" + home.name, log=home / "etcd.log")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.post(url + "/v3/maintenance/status", json={}, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("test etcd did not start:\n" + (home / "etcd.log").read_text())
            time.sleep(0.1)
        yield url
    finally:
        procs.terminate([proc.pid], timeout=10)
        shutil.rmtree(home, ignore_errors=True)
