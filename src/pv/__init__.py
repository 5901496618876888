"""pv: validate contracts, compile their obligations into checks, run them, gate releases.

The import is kept light: nothing here pulls in torch, Hypothesis or CrossHair.
"""

__version__ = "0.1.0"
