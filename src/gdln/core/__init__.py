"""Core layer: architecture graphs, datasets and gates, path statistics, the network map, the
training schedule and shared numerics. Imports nothing above it (see docs/architecture.md)."""
