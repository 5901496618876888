"""Rules over contract expressions (filled by the compiler)."""
