"""The `danlu` command line: one module per command group; each is thin (parse → call → print)."""
