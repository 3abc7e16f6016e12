"""Tests of real servers on loopback: TLS, PB, child processes, databases, a browser."""
