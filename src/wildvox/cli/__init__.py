"""The ``wildvox`` command line (typer). Library code never parses argv or prints."""
