"""doozer: a highly-available, completely consistent store for small amounts
of extremely important data (name service, master election, shared
configuration), re-created in Python from doozerd."""

__version__ = "0.1.0"
