"""twistd wiring: one module per role, each with Options and makeService."""
