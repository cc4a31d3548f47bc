"""xpcompute: analyse A/B tests on compressed sufficient statistics.

The public entry points are re-exported lazily so that importing the package
stays cheap inside a serverless function.
"""

from xpcompute.errors import XPError

__all__ = ["XPError", "__version__"]
__version__ = "0.1.0"
