"""
The booking calendar: when an island, or every island of a federation, is free.

C{schedule} holds the pure model and computations (blocks, free-slot
search over half-open intervals), C{timeline} the views in the viewer's
time zone and the query parameters, C{page} the server-rendered HTML,
C{feeds} the iCalendar and JSON feeds, C{terminal} the command line's
timeline, C{sources} where an aggregate manager and a slice manager get
their schedules, and C{resource} the web resources that serve them.
"""
