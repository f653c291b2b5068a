"""Benchmarks: synthetic suites with exact ground truth, accuracy and speed against a baseline."""
