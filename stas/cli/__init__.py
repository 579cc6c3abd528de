"""Command-line tools: stafctl and stacctl (talk to the daemons over D-Bus) and stasadm (host identity).

The tools import neither libnvme, pyudev, pyroute2 nor multiprocess: they only parse arguments,
make D-Bus calls and print.
"""
