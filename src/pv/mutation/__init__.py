"""``pv mutate``: automatic first-order mutants, each run against the tests that can reach it.

What is mutated (the *targets*): every function (or module attribute) that a
contract binds (``implementation:`` of an equation, the values of a check's
``constants:``), and every scope that a falsifier declares it covers
(``@pytest.mark.falsifies(..., covers=["pkg.module", "pkg.module:function"])``).
The operators are those of :mod:`pv.mutation.generation`.

How: a first pytest run of the given tests (falsifiers and compiled contract
checks) records, per test, the lines of the target files it runs, its outcome
and its duration (:mod:`pv.mutation.tracing`). A mutant is then run
against the tests that passed there and ran one of its lines (a site that runs
at import, such as a module constant, is reached by every test that ran the
module); a falsifier that declares ``covers`` is used only for mutants inside
what it declares. The tests run fastest first and stop at the first failure,
in parallel workers (:mod:`pv.mutation.worker`), each mutant applied in
memory in a forked process, with a timeout scaled from the tests' own time.

Statuses: ``killed`` (a test failed, an assertion or a crash, both recorded),
``survived`` (every selected test passed, or no test reaches the mutant),
``timeout``, ``equivalent`` (listed with a reason in the reviewed equivalents
file; not run unless ``--check-equivalents`` asks, which reports an entry that a
test kills) and ``error`` (the run itself broke). Score = killed / (killed + survived).

A folder named by ``PV_MUTATE_CACHE`` is shared by the first run and every
mutant run: fixtures may keep there what does not depend on the code under
mutation (test models built once by unmutated code).
"""
