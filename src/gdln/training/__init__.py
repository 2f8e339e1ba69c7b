"""Training layer: one compiled engine and its layouts (graph network, stacked routes)."""
