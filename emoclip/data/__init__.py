"""Data: sources that read a data set (sources/), labels, splits, stores and the data module that
hands batches to a model in the batch contract (emoclip.contract)."""
