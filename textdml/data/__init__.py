"""Data: column roles, loading, collators, samplers and builtin offline data sets."""
