"""Tests of wire formats and transports."""
