"""Hostile and random requests for the bytes signature (`serving_default`), generated.

`hostile_png(height, width)` writes by hand a PNG whose IHDR claims any size, with a zlib
stream of zeros (a few KB for millions of pixels) or cut short; `requests(seed, count)`
yields `count` requests, each (list of bytes, list of the sets of statuses each image may
get: a bit-flipped JPEG may still decode, an image within the per-image bounds may find the
request's budget spent). Used by
tests/test_serving_hostile.py (a quick variant) and, for the full run, as a script:

    PYTHONPATH=$PWD python tests/serving_fuzz.py --export_dir=DIR --requests=1000 \
        --memory_limit_gb=8 --peak_rss_limit_mb=3000

which prints one JSON line (requests, images, statuses seen, seconds, peak memory) and
fails on any response that breaks `check`, or a peak over the limit.
"""
import io
import struct
import zlib

import numpy as np
from PIL import Image

# The statuses of deeplab_tf/export/serving.py, written down here independently.
OK, NOT_AN_IMAGE, TOO_LARGE, UNSUPPORTED, DECODE_FAILED, REQUEST_TOO_LARGE = range(6)
SERVABLE = {OK, REQUEST_TOO_LARGE}
DAMAGED = {OK, DECODE_FAILED, TOO_LARGE, REQUEST_TOO_LARGE}  # what damage may lead to


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def hostile_png(height, width, complete=True):
    """An 8-bit RGB PNG of height x width black pixels, written row by row through zlib
    (never height x width in memory); complete=False: the pixel data cut after 64 bytes."""
    compressor = zlib.compressobj(9)
    # Cut short, a few rows' worth is all there is (never a row of a 2**31-wide image).
    row = b"\0" * (3 * (width if complete else min(width, 64)) + 1)
    parts = []
    for _ in range(height if complete else 1):
        parts.append(compressor.compress(row))
    data = b"".join(parts) + (compressor.flush() if complete else b"")
    if not complete:
        data = data[:64]
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))


def encoded(array, image_format):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format,
                                **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def _flip_bits(data, rng, count):
    data = bytearray(data)
    for position in rng.integers(0, len(data), count):
        data[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(data)


def one_image(rng, small, max_side):
    """(bytes, the statuses it may get) of one generated image, any kind.

    `small`: sizes of ordinary images (fit every bound); `max_side`: the export's bound.
    """
    kind = int(rng.integers(0, 12))
    height, width = (int(v) for v in rng.integers(1, small + 1, 2))
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == 0:
        return encoded(pixels, "JPEG"), SERVABLE
    if kind == 1:
        return encoded(pixels, "PNG"), SERVABLE
    if kind == 2:  # random bytes (never starting like an image, by construction)
        data = rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        return b"\x00" + data, {NOT_AN_IMAGE}
    if kind == 3:
        return b"", {NOT_AN_IMAGE}
    if kind == 4:  # another format
        return encoded(pixels, str(rng.choice(["GIF", "BMP", "WEBP", "TIFF"]))), {UNSUPPORTED}
    if kind == 5:  # a JPEG or PNG cut short: in the header or in the pixels
        data = encoded(pixels, str(rng.choice(["JPEG", "PNG"])))
        cut = int(rng.integers(8, max(9, len(data) - 2)))  # the signature kept
        return data[:cut], DAMAGED
    if kind == 6:  # bit flips anywhere after the signature
        data = encoded(pixels, str(rng.choice(["JPEG", "PNG"])))
        return data[:8] + _flip_bits(data[8:], rng, int(rng.integers(1, 20))), DAMAGED
    if kind == 7:  # thin: within max_pixels, its canvas side over max_side
        side = int(rng.integers(max_side + 1, 4 * max_side))
        return hostile_png(*((1, side) if rng.integers(2) else (side, 1))), {TOO_LARGE}
    if kind == 8:  # huge header, little data
        return hostile_png(int(rng.integers(10 ** 4, 2 ** 31 - 1)),
                           int(rng.integers(10 ** 4, 2 ** 31 - 1)), complete=False), {TOO_LARGE}
    if kind == 9:  # a PNG claiming a size within the bounds, its data cut
        return hostile_png(height, width, complete=False), {DECODE_FAILED, REQUEST_TOO_LARGE}
    if kind == 10:  # only the JPEG signature, or the PNG one
        return (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")[int(rng.integers(2))], {DECODE_FAILED}
    return encoded(pixels[..., 0], "PNG"), SERVABLE  # grayscale


def requests(seed, count, small=40, max_side=400, max_images=8):
    """`count` requests: mixed batches of 0 to max_images + 2 images, some empty."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        size = int(rng.integers(0, max_images + 3))
        images = [one_image(rng, small, max_side) for _ in range(size)]
        yield [b for b, _ in images], [s for _, s in images]


def check(images, expected, status, heights, widths, labels, num_classes, max_images):
    """Asserts what one response must be; returns the list of statuses."""
    status = [int(s) for s in status]
    assert len(status) == len(images) == len(heights) == len(widths), (len(status), len(images))
    assert labels.shape[0] == len(images)
    for position, (allowed, got) in enumerate(zip(expected, status)):
        assert got in allowed, (position, allowed, got)
        height, width = int(heights[position]), int(widths[position])
        if got == OK:
            assert height > 0 and width > 0
            assert (labels[position, :height, :width] < num_classes).all()
        else:
            assert height == width == 0
        assert (labels[position, height:] == 255).all()
        assert (labels[position, :, width:] == 255).all()
    assert status.count(OK) <= max_images
    return status


def main():
    import argparse
    import json
    import resource
    import time
    import tensorflow as tf
    parser = argparse.ArgumentParser()
    parser.add_argument("--export_dir", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory_limit_gb", type=float, default=0,
                        help="RLIMIT_AS for this process (0: none)")
    parser.add_argument("--peak_rss_limit_mb", type=int, default=3000,
                        help="exit 1 if the peak resident memory went over this")
    args = parser.parse_args()
    if args.memory_limit_gb:
        limit = int(args.memory_limit_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with open(f"{args.export_dir}/deeplab_export.json") as f:
        metadata = json.load(f)
    bounds = metadata["bounds"]
    serve = tf.saved_model.load(args.export_dir).signatures["serving_default"]
    seen, images_done, start = {}, 0, time.monotonic()
    for images, expected in requests(args.seed, args.requests, max_side=bounds["max_side"],
                                     max_images=bounds["max_images"]):
        out = serve(images=tf.constant(images, tf.string))
        for s in check(images, expected, out["status"].numpy(), out["heights"].numpy(),
                       out["widths"].numpy(), out["labels"].numpy(), metadata["num_classes"],
                       bounds["max_images"]):
            seen[s] = seen.get(s, 0) + 1
        images_done += len(images)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({"requests": args.requests, "images": images_done,
                      "statuses": {str(k): v for k, v in sorted(seen.items())},
                      "seconds": round(time.monotonic() - start, 1), "peak_rss_mb": peak}))
    if peak > args.peak_rss_limit_mb:
        raise SystemExit(f"peak RSS {peak} MB over --peak_rss_limit_mb={args.peak_rss_limit_mb}")


if __name__ == "__main__":
    main()
