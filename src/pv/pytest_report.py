"""pytest plugin: gate reports from falsifier and obligation results."""
