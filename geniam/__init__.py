"""
geniam: a Twisted federation server for GENI-style research testbeds.

It holds three roles (aggregate manager, slice manager, gateway agent)
built on one trust layer, one booking core and one storage interface.
"""

__version__ = "0.1.0"
