"""Files: bounded readers for untrusted data files and atomic, staged writers for outputs."""
