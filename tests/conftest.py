import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
#: Fallback data root when ``$BENCHMARK_DATA_ROOT`` is unset: the checkout's sibling ``shared/datasets``.
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread():
    """Tiny models: one thread is faster, and immune to a busy machine's OpenMP stalls.  Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def data_root() -> Path:
    """``$BENCHMARK_DATA_ROOT``, else the repo-relative ``../shared/datasets``."""
    env = os.environ.get("BENCHMARK_DATA_ROOT")
    return Path(env).expanduser() if env else SHARED_DATASETS


@pytest.fixture
def shared_datasets() -> Path:
    """The real-data root; the test is skipped, with the reason, when it is not a folder."""
    root = data_root()
    if not root.is_dir():
        how = f"BENCHMARK_DATA_ROOT={os.environ['BENCHMARK_DATA_ROOT']!r}" if os.environ.get("BENCHMARK_DATA_ROOT") \
            else f"BENCHMARK_DATA_ROOT is unset and {SHARED_DATASETS}"
        pytest.skip(f"no real data: {how} is not a folder")
    return root


@pytest.fixture
def real_dataset(shared_datasets):
    """``real_dataset("fsdd", "recordings")`` returns the data root, or skips the test when that
    folder of it is missing."""
    def need(*parts: str) -> Path:
        if not shared_datasets.joinpath(*parts).is_dir():
            pytest.skip(f"real data missing: {shared_datasets.joinpath(*parts)} is not a folder "
                        f"(set BENCHMARK_DATA_ROOT to a data root that has it)")
        return shared_datasets
    return need
