"""Tests of the managers."""
