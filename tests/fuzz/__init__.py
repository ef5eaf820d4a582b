"""A fuzzing harness that drives a real node's receive paths (issue 21).

``python -m tests.fuzz --help`` runs it for as long as wanted; ``tests/fuzz/test_*.py``
run it for a few seconds per path in ``make test``. docs/fuzzing.md explains both.

* :mod:`.extremes`: integers at their extremes, deep/huge/tagged/malformed CBOR.
* :mod:`.datagrams`: valid datagrams from the project's encoder, cut into the fields
  of docs/protocol.md, and structure-aware mutations of each field.
* :mod:`.inputs`: seeded input streams for the data groups, the control group and
  the plugin bus, and the inputs of the issue's findings.
* :mod:`.watch`: the properties: no escaped exception, no loop stall, bounded RSS,
  bounded log.
* :mod:`.drive`: two real nodes on loopback, one path fuzzed, then a liveness check.
"""
