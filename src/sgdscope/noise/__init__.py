"""sgdscope.noise."""
