"""The HTTP edge: the connection and its limits, the guard, the router, and writing answers."""
