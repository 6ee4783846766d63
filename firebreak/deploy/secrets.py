"""The estate's secrets: made once, kept in one file only its owner can read, rendered into the
files (mode 0600) of the hosts that need each one, never into an inventory, a unit or an argv.

    superuser, replication   PostgreSQL's users Patroni manages
    app                      the claims (or estate) database user's password
    patroni_api              Patroni's REST API user, which the agents switch over with
    app_admin                the token the agent pushes releases to its site's app with
    session                  signs reviewer sessions and portal forms, the same in every site
    cluster_token            etcd's initial cluster token (not secret; stable across renders)
    etcd: {role: password}   one etcd user per role: root, patroni, agent-<site>, claims, ops

Rendering again with the same file gives the same files; a new file would change every password
on every host, so `deploy render` makes one only when there is none.
"""

from __future__ import annotations

import secrets as pysecrets
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from firebreak.control.keys import OPS_ROLE, agent_role
from firebreak.errors import InputError, Problem
from firebreak.inputs import load_yaml_model

ROOT_ROLE = "root"


def etcd_roles(sites: list[str]) -> list[str]:
    """Every etcd user of an estate (control/keys.py role_grants): root, Patroni's, one agent per
    site, the claims service's and the operators'."""
    return [ROOT_ROLE, "patroni", *(agent_role(s) for s in sites), "claims", OPS_ROLE]


class DeploySecrets(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    superuser: str = Field(min_length=16)
    replication: str = Field(min_length=16)
    app: str = Field(min_length=16)
    patroni_api: str = Field(min_length=16)
    app_admin: str = Field(min_length=16)
    session: str = Field(min_length=16)
    cluster_token: str = Field(min_length=4)
    etcd: dict[str, str] = Field(default_factory=dict)


def make_secrets(sites: list[str], token: Callable[[], str] = lambda: pysecrets.token_urlsafe(24)) -> DeploySecrets:
    """Fresh secrets for an estate of these sites (`token` injected for tests)."""
    return DeploySecrets(superuser=token(), replication=token(), app=token(), patroni_api=token(),
                         app_admin=token(), session=token(), cluster_token=token()[:12],
                         etcd={role: token() for role in etcd_roles(sites)})


def with_sites(s: DeploySecrets, sites: list[str],
               token: Callable[[], str] = lambda: pysecrets.token_urlsafe(24)) -> tuple[DeploySecrets, list[str]]:
    """The secrets with a password for every etcd role these sites need, and the roles added (a
    site added to the inventory gets its agent's user; nothing existing changes)."""
    missing = [r for r in etcd_roles(sites) if r not in s.etcd]
    if not missing:
        return s, []
    return s.model_copy(update={"etcd": {**s.etcd, **{r: token() for r in missing}}}), missing


def load_secrets(path: Path) -> DeploySecrets:
    return load_yaml_model(path, DeploySecrets)[0]


def check_private(path: Path) -> None:
    """A secrets file others can read is refused: its passwords may already be known."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise InputError(Problem(str(path), "", f"mode {mode:04o} lets other users read these secrets; "
                                               f"`chmod 600 {path}` (and consider rotating them)"))


def dump(s: DeploySecrets) -> str:
    import yaml

    head = ("# Firebreak's secrets for this estate (firebreak deploy render). Mode 0600; keep it as you\n"
            "# keep any password store: rendering with a new file changes every password on every host.\n")
    return head + yaml.safe_dump(s.model_dump(), sort_keys=False)
