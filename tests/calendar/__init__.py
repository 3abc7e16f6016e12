"""Tests of the booking calendar."""
