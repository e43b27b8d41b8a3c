"""Cluster DNS: record table and dnslib server.

records (pure table, Kubernetes DNS spec 1.1.0) -> wire (precomputed reply templates, no-dnslib fast
path) -> server (asyncio UDP/TCP, store watch, health/ready) with forward (upstreams + cache);
upstream is the lab's small authoritative server. `python -m netk8s.dns --help` for the CLI.
"""
