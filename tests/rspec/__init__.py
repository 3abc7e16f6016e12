"""Tests of RSpec documents."""
