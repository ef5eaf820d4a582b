"""The leak check of the compiled paths (``python -m tests.leaks``, ``make leakcheck``)."""
