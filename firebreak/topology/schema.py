"""The file format of a topology, as pydantic models: types, unknown fields, counts.

Cross-references (sites, dependencies, cycles) are checked in load.py, where the whole file
is in view.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt


class _Strict(BaseModel):
    # strict: "2" is not a number and 1 is not a name; a person who wrote that made a mistake.
    model_config = ConfigDict(extra="forbid", strict=True)


class ServiceSpec(_Strict):
    kind: Literal["service", "database", "quorum", "ops-tool"] = "service"
    replicas: dict[str, NonNegativeInt] = Field(default_factory=dict)
    needs: int = Field(default=1, ge=1)
    depends_on: list[str] = Field(default_factory=list)
    recovery: list[str] = Field(default_factory=list)
    primary: str | None = None
    replication: Literal["sync", "quorum", "async"] | None = None
    failover: Literal["auto", "manual"] | None = None
    # database only: its clients reach it through a database door in each site, which closes
    # their sessions on a dead primary and sends them to the new one (Firebreak's db_door)
    doors: bool | None = None
    description: str = ""


class TopologySpec(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    sites: list[str] = Field(min_length=1)
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
