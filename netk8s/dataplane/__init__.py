"""The only package that touches the kernel."""
