"""
The gateway agent's back ends: a simulated gateway and one driving real tools.
"""
