"""The `vane` command."""
