"""The fit function."""
