"""Gate reports: what one pytest run showed, written by the ``pv-report`` pytest plugin.

A report (``gate-report.schema.json`` of ``pv.schemas``, format ``pv-gate-report/2``) holds:
the session (arguments, ``-m``/``-k`` selection, whether mutants ran, pytest's
exit status, tests collected and executed, outcomes, collection errors); the
hardware profile and whether it matches the device; the environment (versions,
git commit and dirty flag, host, device); each contract's path and sha256; each
falsifier's status with its tests, durations, evidence and mutant runs; each
obligation's verdicts; a checksum against accidental edits and, when the host
has a key, an Ed25519 signature over all of it.

Modules: ``records`` (phase reports folded per test), ``build`` (the report),
``contracts`` (what a gate needs of a contract), ``environment``, ``integrity``
(the checksum), ``signing`` (keys and signatures), ``statuses``, ``report_schema``,
``profiles`` (built-in and project hardware profiles), ``markdown`` (CI summary),
``gate_output`` (``pv gate`` formats), ``vacuity``, ``mutate`` (``pv mutate``).
"""
