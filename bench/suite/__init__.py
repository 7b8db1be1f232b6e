"""asv benchmarks (``benchmark_dir`` in asv.conf.json): thin classes over ``bench.measure`` (and the gate's
seeded training run), so asv, the CLI sweeps and the regression gate measure the same thing."""
