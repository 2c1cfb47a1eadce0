"""
Cuebot and the layers in front of it: the RPC table, the gRPC client, by-id batching,
read sharing and stale reads.
"""
