"""Lambda-style handlers, one folder per function; each handler is one call into xpcompute."""
