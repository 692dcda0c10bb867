"""`sgdscope reproduce`: the paper's experiments end to end, compared number by number."""
