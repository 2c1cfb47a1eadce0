"""
State shared by gateway processes and instances through Redis (C{--redis URL}): rate
limit buckets, the read cache, single flight of reads, and stale-if-error answers.
Without Redis, or while it is away, each process uses its own state.

The modules: L{address} (the setting), L{store} (the connection and its health),
L{buckets}, L{reads}, L{stale} (what is shared), L{split} (C{--workers} without Redis).
"""
