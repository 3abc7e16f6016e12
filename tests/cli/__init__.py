"""Tests of the geniam command."""
