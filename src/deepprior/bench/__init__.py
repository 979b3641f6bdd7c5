"""Benchmark protocols that reproduce the papers' tables (see ``protocols``)."""
