"""Commands of the distill package, registered with `pv` through the ``pv.commands`` entry points."""
