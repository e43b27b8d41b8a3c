"""The ingress controller: Ingresses -> nginx.conf (a pure renderer) and the loop that runs Debian's nginx."""
