"""RSpec v3 documents, the island extension and merging."""
