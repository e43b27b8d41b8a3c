"""kube-proxy role: change tracking, renderers per mode, syncer."""
