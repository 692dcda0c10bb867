"""sgdscope.trajectory."""
