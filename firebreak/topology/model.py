"""The validated, immutable topology: sites, services and where their instances run."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Mapping


class Kind(StrEnum):
    SERVICE = "service"
    DATABASE = "database"
    QUORUM = "quorum"  # needs a strict majority of its members alive
    OPS_TOOL = "ops-tool"


class Replication(StrEnum):
    SYNC = "sync"
    QUORUM = "quorum"  # ANY k of the standbys: a commit is on the primary and on k other sites
    ASYNC = "async"


class Failover(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    kind: Kind = Kind.SERVICE
    replicas: Mapping[str, int] = field(default_factory=dict)
    needs: int = 1
    depends_on: tuple[str, ...] = ()
    recovery: tuple[str, ...] = ()
    # Database only. Defaults are the pessimistic ones: nobody gets zero data loss or
    # automatic failover without declaring it.
    primary: str | None = None
    replication: Replication = Replication.ASYNC
    failover: Failover = Failover.MANUAL
    doors: bool = False  # clients reach it through database doors, not straight to its hosts
    description: str = ""

    @property
    def total(self) -> int:
        return sum(self.replicas.values())

    def sites(self) -> tuple[str, ...]:
        return tuple(s for s, n in self.replicas.items() if n > 0)


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    sites: tuple[str, ...]
    services: Mapping[str, Service]
    description: str = ""
    source: str = "<memory>"

    def __post_init__(self) -> None:
        # Read-only view so an analysis can never change the model it was given.
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))
