"""Running the daemon: the service tree, shutdown, health and metrics, workers, the demo farm."""
