"""What every wing may use of the machine and its files: files written whole (atomic), checkpoints
read safely (checkpoint_io), keyed digests, safe YAML, CPU threads, the Hugging Face hub offline."""
