"""Benchmarks for runner-scaler (``python -m benchmarks``); see README.md."""
