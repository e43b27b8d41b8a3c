"""kubectl-style command line: parse, call, print."""
