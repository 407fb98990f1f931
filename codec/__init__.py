"""tilefn.codec."""
