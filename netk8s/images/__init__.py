"""Built-in behaviour for well-known container images."""
