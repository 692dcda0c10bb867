"""sgdscope.reference."""
