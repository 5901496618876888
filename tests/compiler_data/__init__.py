"""Small functions and contracts on which the compiler's checks are shown to pass and to fail."""
