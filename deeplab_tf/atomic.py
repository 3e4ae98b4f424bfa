"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file one process writes and another reads (a run's config.json and classes.json,
evaluator results, exported .tflite / .onnx files) goes through here: the bytes go to a
temporary file in the same directory, are flushed to disk, and `os.replace` renames it over
the target, which POSIX makes atomic within one file system. A process killed while
writing leaves at most a `.NAME.*.tmp` file beside the target, never an empty or truncated
target.

Paths with a scheme (gs://, hdfs://) go through TensorFlow's file systems: the temporary
object is renamed with `tf.io.gfile.rename` (on GCS an object appears whole once its
upload completes). Standard library only, importable from every subpackage without a cycle.
"""
import json
import os
import uuid


def _is_remote(path):
    return "://" in path


def _temporary(path):
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically; returns `path`."""
    path = os.fspath(path)
    if _is_remote(path):
        import tensorflow as tf
        temporary = _temporary(path)
        with tf.io.gfile.GFile(temporary, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(temporary, path, overwrite=True)
        return path

    def write(temporary):
        with open(temporary, "wb") as f:
            f.write(data)

    return write_with(path, write)


def write_with(path, write):
    """Atomically makes `path` the file that `write(temporary_path)` writes (also a writer
    that wants a path of its own, such as TFRecordWriter); returns `path`. Local paths."""
    path = os.fspath(path)
    temporary = _temporary(path)
    try:
        # 0o666 before the umask: the mode an ordinary open() would give (mkstemp's is
        # 0o600, which other users of a shared run directory could not read).
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(temporary)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, value, **dumps_options):
    """Writes `json.dumps(value, **dumps_options)` to `path` atomically; returns `path`."""
    return write_text(path, json.dumps(value, **dumps_options))
