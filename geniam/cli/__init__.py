"""The geniam command line."""
