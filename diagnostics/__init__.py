"""maildiag: configuration validator and diagnostic suite for recruiting e-mail setups."""

__version__ = "0.1.0"
