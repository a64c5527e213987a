"""A run and its folder: what training writes there (metrics, console log, curves), the
callbacks that stop, save or track it (faults, early stopping, tracking), and sweeps of runs."""
