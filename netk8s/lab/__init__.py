"""One-machine lab: underlay, node namespaces, external client, agents."""
