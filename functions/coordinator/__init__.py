"""The coordinator function."""
