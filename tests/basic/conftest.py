import pytest

# transcript.py holds the assertions of every conversation test: show their diffs
pytest.register_assert_rewrite("tests.basic.transcript")
