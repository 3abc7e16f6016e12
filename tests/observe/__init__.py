"""Tests of metrics, health and logs."""
