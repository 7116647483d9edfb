import pytest

from vggnet import config

# A run small enough for the test suite: a width-1/8 VGG-A on 32x32 synthetic images.
TINY = [
    "data.name=synthetic", "data.num_train=320", "data.num_test=64", "data.num_classes=4",
    "model.width=0.125", "model.dropout=0.0", "train.batch_size=32", "train.epochs=2",
    "train.progress=false", "train.lr=0.02", "train.warmup_epochs=0.5",
]


@pytest.fixture
def tiny_cfg():
    def make(*overrides: str) -> config.RunConfig:
        return config.load(None, [*TINY, *overrides])

    return make


@pytest.fixture
def tiny_sets() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="module")
def tiny_sets_module() -> list[str]:
    """TINY for module-scoped fixtures (one run shared by a file's tests)."""
    return list(TINY)
