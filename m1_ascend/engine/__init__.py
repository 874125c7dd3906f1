"""Serving engine: scheduler, block manager, model runner and sampler over the paged KV cache."""
