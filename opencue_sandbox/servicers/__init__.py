"""gRPC servicers over the farm model, one module per proto package."""
