"""Tests of the booking core."""
