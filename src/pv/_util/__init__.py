"""Small shared utilities of every stage: the error root and the one atomic writer."""
