"""Data sources: one module per data set, its contract in base.py.

synthetic (the demo set), ckplus, fer2013, dair_emotion, text_table, image_folders, manifest,
mvsa_single, and paired (two sources paired by label, e.g. CK+ x DAIR).
"""
