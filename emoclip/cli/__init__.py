"""The entry points' plumbing: Hydra entry, one clear line per error (entry.py), and the checks of
a composed config that Hydra does not make (config_checks.py)."""
