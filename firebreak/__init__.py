"""Firebreak: make losing a whole site a non-event, provably."""

__version__ = "0.1.0"
