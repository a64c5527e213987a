"""The demo: drawn faces and template sentences (synthetic.py) for data=synthetic, and example
files in every shipped source's own layout (examples.py)."""
