"""HOW attention is measured: harness (measure, isolate, sweeps, store, analysis, plots, report, CLI) and asv suite."""
