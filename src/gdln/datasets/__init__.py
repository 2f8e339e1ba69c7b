"""Offline image and sequence sources, route tasks, and the one fitted input transform."""
