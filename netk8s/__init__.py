"""netk8s: Kubernetes Services and networking, built for real on the Linux kernel."""

__version__ = "0.1.0"
