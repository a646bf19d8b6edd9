"""Microbenchmarks: what it costs to create, to switch and to hold each unit of concurrency.

A process, a subinterpreter, a thread, a greenlet, a generator, an asyncio task and a trio task,
each measured the same ways, with pytest-benchmark (the subinterpreter, which needs Python 3.12+
for a GIL of its own, in a child of one: subinterp.py; switching does not apply to it):

- ``test_create.py``  create one unit, run a trivial body to completion, reap it;
- ``test_switch.py``  pass control back and forth between two units of the same kind, on one core
  and, where the kernel is involved, across two cores;
- ``test_memory.py``  hold N units alive at once in a fresh interpreter and divide the growth
  of memory by N (``hold.py`` does the holding; ``python -m bench.micro.hold thread 1000``).

``python -m bench.micro.report`` turns the saved JSON into a one-screen table and a chart.
Lessons 04 (processes in Linux), 06 (threads in Linux) and 10 (fibers) quote these numbers.

Run them with ``make micro``; ``make test`` runs them once each with ``--benchmark-disable``, as
correctness checks, never timed.
"""
