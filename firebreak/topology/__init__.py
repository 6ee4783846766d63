"""The model of sites, services, placements and dependencies, and its YAML loader."""

from firebreak.topology.load import find_cycle, load_topology, topology_from_dict
from firebreak.topology.model import Failover, Kind, Replication, Service, Topology

__all__ = ["Failover", "Kind", "Replication", "Service", "Topology",
           "find_cycle", "load_topology", "topology_from_dict"]
