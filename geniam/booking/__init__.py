"""
The booking core: time slots, bookings and holds, their lifecycle as pure
transitions, and the rules of conflict and expiry. No I/O, no wire codes:
time comes in as an argument and failures are domain errors.
"""
