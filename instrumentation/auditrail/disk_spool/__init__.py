"""The parts of the on-disk spool (auditrail.spool_file.DiskSpool composes them), one idea a module."""
