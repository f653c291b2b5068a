"""Fitting the body model to scans: initialisation, loop fit, surface fit, metrics."""
