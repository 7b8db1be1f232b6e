"""HOW attention is measured: harness (measure, isolate, sweep, store, fit, plot, report, CLI) and asv suite."""
