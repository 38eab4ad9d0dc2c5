"""The paper's experiments, as code the command line runs."""
