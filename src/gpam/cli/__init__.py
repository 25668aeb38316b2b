"""The ``gpam`` command line: argument parsing only; every command calls into the library."""
