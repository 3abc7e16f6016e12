"""Tests of the twistd services."""
