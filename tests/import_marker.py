"""A module whose import the security tests watch for: nothing may import it on a
client's behalf unless the client may name it. It counts its imports in
``IMPORTS`` of the `monq` package's namespace, which outlives a re-import."""

import monq
from monq import Job

monq.__dict__.setdefault("_import_marker_imports", []).append(__name__)


class Marked(Job):
    def execute(self) -> None:
        return None
