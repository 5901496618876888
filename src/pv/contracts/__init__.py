"""Stage 1, contracts: load contract files, the dialect they are written in (schema, check
blocks, the expression language) and the rules that validate them."""
