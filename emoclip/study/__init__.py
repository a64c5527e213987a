"""The study wing: a study built from its config (build.py), rebuilt from a checkpoint or run
folder (restore, resume, stored_study, legacy) under what the user trusts (trust), scored on
another data set (cross_dataset); joins data/ and models/, and caches frozen features."""
