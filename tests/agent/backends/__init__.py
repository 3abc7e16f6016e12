"""Tests of the gateway agent's back ends."""
