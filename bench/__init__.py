"""The benchmarks (run each as a script); a package so that one can import another."""
