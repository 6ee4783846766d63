"""The estate: many services and database clusters under one control plane (issue 13).

`service.py` is the reference estate service the lab runs for each plain service of a topology.
"""
