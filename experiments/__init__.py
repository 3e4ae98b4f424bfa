"""One Python config per paper table or run; each module has `get_config()`."""
