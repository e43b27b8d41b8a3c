"""`netk8s trace` and `netk8s flows`: the pure model and renderers (model, paths) and the live tracer (live)."""
