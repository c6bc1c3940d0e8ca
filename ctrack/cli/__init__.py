"""The `ctrack` command: one module per subcommand, registered explicitly in main.py."""
