"""API semantics: the aggregate manager over the island resource manager, and the slice manager."""
