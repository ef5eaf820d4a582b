"""The ``ganglion`` command-line interface."""
