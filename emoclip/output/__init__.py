"""What a reader gets from runs: the comparison report's tables, its documents, attribution maps
and each run's majority-class floor."""
