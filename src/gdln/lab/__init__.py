"""Tooling on top of the library: configs, run folders, sweeps, experiments, plots and the CLI.
``import gdln`` never loads it."""
