"""Node agent: kubelet + CNI role, overlay, pod processes, probes."""
