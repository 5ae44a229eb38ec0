"""Network-partition simulator: virtual clock and network driving the same cores as the nodes."""
