"""pytest plugin: collect contract obligations as test items (see pv.compiling)."""
