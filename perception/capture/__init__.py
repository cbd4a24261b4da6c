"""Frame sources chosen by URI scheme, and the one capture thread that feeds the node."""
