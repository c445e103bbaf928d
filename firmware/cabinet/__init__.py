"""Cabinet controller application (MicroPython package ``cabinet`` on the board)."""
