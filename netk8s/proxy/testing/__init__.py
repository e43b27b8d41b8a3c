"""Fakes of the kernel's proxy interfaces (iptables, nft) with packet tracers, for tests (kube-proxy keeps its fakes in pkg/util/*/testing)."""
