"""The `wlops` command line."""
