"""Fixtures of the channel tests: no test may reach the network beyond 127.0.0.1."""

from __future__ import annotations

from tests.offline_network import offline_network

__all__ = ["offline_network"]
