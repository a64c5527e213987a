"""Models: towers that encode one modality (towers/), fusions and heads, the networks built from
them, and the Lightning module that trains any of them."""
