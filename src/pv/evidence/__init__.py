"""Gate reports: what one pytest run showed, written by the ``pv-report`` pytest plugin, and the gate over them.

A report (``gate-report.schema.json`` of ``pv.schemas``, format ``pv-gate-report/3``) holds:
the session (arguments, ``-m``/``-k`` selection, whether mutants ran, pytest's
exit status, tests collected and executed, outcomes, collection errors); the
hardware profile and whether it matches the device; the environment (versions,
the git commit and tree the run came from, whether it was dirty, whether it was
a clean-room run, host, device); each contract's path and sha256; each
falsifier's status with its tests, durations, evidence and mutant runs; each
obligation's verdicts; every input file by sha256; and a checksum against
accidental edits. It travels as an in-toto statement in a DSSE envelope, beside
a test-result/v0.1 statement, signed by the host's key when it has one.

Modules: ``records`` (phase reports folded per test), ``build`` (the report),
``run_inputs`` (its input files and git source), ``attestations`` (its
statements), ``contracts`` (what a gate needs of a contract), ``environment``,
``integrity`` (the checksum), ``statuses``, ``report_schema``, ``profiles``
(built-in and project hardware profiles), ``markdown`` (CI summary),
``mutation_evidence`` (signed ``pv mutate`` reports, bound to a tree), ``gate``
and ``gate_output`` (``pv gate``), ``release_summary`` (a release's verification
summary), ``vacuity``, ``mutate`` (``pv mutate``).
"""
