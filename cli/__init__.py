"""The leadflow command line."""
