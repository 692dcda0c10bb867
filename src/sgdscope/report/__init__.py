"""Figures and the HTML report. Renders result objects; never recomputes them."""
