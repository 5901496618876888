"""Evidence that can be checked by others: host keys, DSSE envelopes of in-toto statements, the input
files a verdict rests on (by digest, from a folder or a git commit), and clean-room exports."""
