"""python -m servers.uring: what this kernel's io_uring offers."""

from servers.uring.probe import describe

print(describe())
