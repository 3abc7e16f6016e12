"""Tests of the status listener."""
