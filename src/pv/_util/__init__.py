"""Small shared utilities of every stage: the error root, the one atomic writer, the project's
``[tool.pv]`` configuration (``config``) and pv's package data (``resources``)."""
