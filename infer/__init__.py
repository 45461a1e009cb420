"""Inference: code files, the encode/decode API and commands, evaluation against Opus."""
