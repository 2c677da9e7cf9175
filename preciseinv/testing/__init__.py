"""Test fixtures that ship with the package: tiny random-weight pipelines of every family (``tiny``), for the test
suite, the benchmarks' held-out suite, the notebook and anyone trying the pipeline without downloading a model.
Nothing in the library imports this package."""
