"""A module that fails to import, for testing enqueue errors."""

raise ImportError("this module is broken on purpose")
