"""What test files share, in one place: the stage runner and repository paths, params builders,
test doubles (fake chat backends and OpenAI-compatible servers), the tiny in-process models, and
synthetic inputs and results. A test module imports only from here (and conftest's fixtures by
name), never from another test module (tests/project/test_test_layout.py checks it)."""
