"""asv benchmarks (``benchmark_dir`` in asv.conf.json): thin classes over ``bench.measure`` and ``bench.gate``, so
asv, the CLI sweeps and the regression gate measure the same thing."""
