"""NetworkPolicy: the pure reachability model, its nftables renderer and the node agent's syncer."""
