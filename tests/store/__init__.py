"""Tests of the booking stores."""
