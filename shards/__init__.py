"""Data side of TeluCodec: turn recordings into loudness-normalised WebDataset shards
(``shards.prep``) and read them back for training (``shards.reader``).

The shard format is described in :mod:`shards.manifest`.
"""
