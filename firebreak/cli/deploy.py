"""`firebreak deploy`: every host's files from one inventory (firebreak/deploy/ is the pure core;
this module only reads the inputs and writes what it returns)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import typer

from firebreak.cli.base import OutputFormat, app, err, out
from firebreak.errors import InputError, Problem

deploy_app = typer.Typer(no_args_is_help=True, help="Files for real hosts: systemd units, etcd, Patroni, HAProxy, "
                                                   "Caddy, the agent and the claims service, from one inventory.")
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("render")
def deploy_render(
    inventory: Path = typer.Option(..., "--inventory", metavar="FILE", help="The inventory: sites, hosts, "
                                   "addresses, roles (deploy/inventory.example.yml)."),
    out_dir: Path = typer.Option(..., "--out", metavar="DIR", help="Where to write: DIR/<host>/ mirrors each "
                                 "host's root (etc/systemd/system/..., etc/firebreak/...)."),
    secrets_file: Path = typer.Option(None, "--secrets", metavar="FILE", help="The estate's secrets (YAML, mode "
                                      "0600). Default: DIR/secrets.yml, made with fresh passwords if missing."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text for people, json for programs."),
) -> None:
    """Render every host's files. A bad inventory is refused whole (exit 2), nothing written."""
    from firebreak.deploy.inventory import load_inventory
    from firebreak.deploy.render import render
    from firebreak.deploy.secrets import check_private, dump, load_secrets, make_secrets, with_sites

    inv = load_inventory(inventory)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(Problem("--out", "", f"{out_dir} exists and is not a directory"))
    path = secrets_file or out_dir / "secrets.yml"
    made = False
    if path.exists():
        check_private(path)
        secrets = load_secrets(path)
    elif secrets_file is not None:
        raise InputError(Problem("--secrets", "", f"{path}: file not found; leave --secrets out to make new "
                                                  f"secrets in {out_dir / 'secrets.yml'}"))
    else:
        secrets, made = make_secrets(inv.names), True
    secrets, added = with_sites(secrets, inv.names)
    files = render(inv, secrets)

    # Everything is known and valid: only now is anything written.
    for rel, f in files.items():
        _write(out_dir / rel, f.content, f.mode)
    if made or added:
        _write(path, dump(secrets), 0o600)

    hosts = {h.name: {"site": h.site, "roles": sorted(h.roles),
                      "files": ["/" + rel.split("/", 1)[1] for rel in files if rel.split("/", 1)[0] == h.name]}
             for h in inv.hosts}
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps({"out": str(out_dir), "secrets": str(path), "secrets_made": made,
                                     "etcd_users_added": added, "hosts": hosts, "notes": list(inv.notes)}) + "\n")
        return
    out.print(f"Rendered {len(files)} files for {len(hosts)} hosts in {out_dir}/ (each host's root under "
              f"{out_dir}/<host>/).", highlight=False, soft_wrap=True)
    for name, h in hosts.items():
        units = [p.rsplit("/", 1)[1] for p in h["files"] if p.startswith("/etc/systemd/system/")]
        out.print(f"  {name} ({h['site']}): {', '.join(units)}", highlight=False, soft_wrap=True)
    if made:
        out.print(f"New secrets in {path} (mode 0600): keep it, and pass --secrets next time; rendering with "
                  "new secrets changes every password on every host.", highlight=False, soft_wrap=True)
    elif added:
        out.print(f"Added etcd users to {path}: {', '.join(added)}", highlight=False, soft_wrap=True)
    for note in inv.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


def _write(path: Path, content: str, mode: int) -> None:
    """Write atomically with its mode from the start: a secret is never readable by others, not
    even for the instant between a write and a chmod."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
