"""
The status listener: plain HTTP for people and monitoring, apart from the
TLS AM API listener. The calendar pages live on it.
"""
