"""Fakes of the kernel's proxy interfaces (iptables, nft, IPVS), for tests (kube-proxy keeps its fakes in pkg/util/*/testing); their packet tracers are the product's (netk8s.proxy.tracer_*)."""
