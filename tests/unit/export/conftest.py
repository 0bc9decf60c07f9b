import pytest

from tests.unit.serve.runs import one_torch_thread

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
