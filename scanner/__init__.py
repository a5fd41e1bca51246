"""District App Inventory: third-party apps connected to a district's accounts."""

__version__ = "0.1.0"
