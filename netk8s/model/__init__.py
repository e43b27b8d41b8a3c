"""Pure objects, validation, naming and IPAM."""
