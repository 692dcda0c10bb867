"""sgdscope.paper."""
