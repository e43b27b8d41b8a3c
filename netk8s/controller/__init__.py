"""Controllers: pure reconcile functions and the loop that runs them."""
