"""The bench: load generator, runner, metrics sampler, plots and report, microbenchmarks."""
