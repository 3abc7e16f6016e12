"""API semantics: aggregate, slice, island, tickets and transactions managers."""
