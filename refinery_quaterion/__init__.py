"""refinery-quaterion."""
__version__ = "0.1.0"
