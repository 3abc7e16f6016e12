"""Tests of the gateway vocabulary."""
