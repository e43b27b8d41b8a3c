"""Cluster DNS: record table and dnslib server."""
