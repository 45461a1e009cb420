"""Project-wide pieces that every layer (shards, codec, trainer, infer) may import: only the
error types live here, so no layer has to import another's internals to raise or catch them."""
