"""The launch tests train on the trainer tests' tiny shard set."""

from tests.trainer.conftest import tiny_shards  # noqa: F401
