"""
The gateway's vocabulary, shared by the aggregate manager, the gateway agent and the in-process gateway.
"""
