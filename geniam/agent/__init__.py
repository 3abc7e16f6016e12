"""The gateway agent: its device back ends and its service."""
