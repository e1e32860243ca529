"""CLI commands: one module per command (group); each is registered in facestream/cli.py."""
