"""The slice function."""
