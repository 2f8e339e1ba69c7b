"""ReLU networks read as gated deep linear networks: a trained ReLU network explained as a race between
the gated pathways it forms (:func:`gdln.explain`)."""
