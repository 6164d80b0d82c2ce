"""`make bench-images`: the processor's ladder beside libvips's, on the same photos, in one run.

For each photo (the camera photographs `scripts/photos.sh` downloads: 4.5 to 16 megapixels at
their cameras' own sizes, nothing upscaled, as sellers upload them; tests/fixtures/photos.md):
- ours: the `compress` example (the processor's own transform, one thread) makes the whole
  ladder, IMAGE_VARIANT_WIDTHS in each of IMAGE_VARIANT_FORMATS, from one decode;
- libvips: `thumbnail` per width (shrink-on-load), saved as WebP Q 80 and AVIF (libheif with
  aom, Q = VIPS_AVIF_Q), VIPS_CONCURRENCY=1, the median of RUNS runs of the whole ladder;
- time is CPU time (user + system, every thread), so a library that starts threads of its
  own (aom does) is charged for all of them: the cost per image on a busy server;
- quality: every output is decoded with libvips and compared with the source scaled to the
  same size (Lanczos3 from the full image, no shrink-on-load): SSIM on luma (Gaussian
  window 11, sigma 1.5);
- AVIF at equal SSIM: libvips also saves the 1280-w thumbnail as AVIF at Q 40 to 80 (steps
  of 5, not timed); the bytes it needs for our 1280-w AVIF's SSIM are interpolated between
  the two settings that bracket it, and set against our bytes.

Prints one table per photo and a summary in Markdown, for docs/benchmarks.md.
Usage: python bench-images.py COMPRESS_BINARY PHOTOS_DIR WORK_DIR
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyvips

RUNS = int(os.environ.get("RUNS", "3"))
WIDTHS = [int(w) for w in os.environ.get("IMAGE_VARIANT_WIDTHS", "320,640,960,1280,1600").split(",")]
VIPS_WEBP_Q = 80
VIPS_AVIF_Q = int(os.environ.get("VIPS_AVIF_Q", "50"))
def luma(image: pyvips.Image) -> np.ndarray:
    image = image.colourspace("srgb")
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    rgb = image.numpy().astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def blur(a: np.ndarray) -> np.ndarray:
    x = np.arange(-5, 6)
    k = np.exp(-(x**2) / (2 * 1.5**2))
    k /= k.sum()
    for axis in (0, 1):
        padded = np.pad(a, [(5, 5) if i == axis else (0, 0) for i in range(2)], mode="reflect")
        n = a.shape[axis]
        a = sum(w * np.take(padded, range(i, i + n), axis=axis) for i, w in enumerate(k))
    return a


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def reference(source: pyvips.Image, width: int, height: int) -> np.ndarray:
    return luma(source.resize(width / source.width, vscale=height / source.height, kernel="lanczos3"))


def thumbnail(photo: Path, width: int) -> pyvips.Image:
    """libvips's thumbnail `width` pixels wide, as our ladder's widths are: without a height
    it would fit a width x width square, and a portrait photo would come out narrower."""
    return pyvips.Image.thumbnail(str(photo), width, height=10_000_000)


def vips_avif_bytes_at(photo: Path, source: pyvips.Image, target_ssim: float, out: Path) -> float:
    """The bytes libvips's AVIF needs at 1280 w to reach `target_ssim`, interpolated between
    the qualities that bracket it (NaN if none does)."""
    thumb = thumbnail(photo, 1280).copy_memory()
    ref = reference(source, thumb.width, thumb.height)
    points = []
    for q in range(40, 81, 5):
        path = out / f"{photo.stem}-sweep.avif"
        thumb.write_to_file(f"{path}[Q={q},strip]")
        points.append((ssim(luma(pyvips.Image.new_from_file(str(path))), ref), path.stat().st_size))
    points.sort()
    for (s0, b0), (s1, b1) in zip(points, points[1:]):
        if s0 <= target_ssim <= s1:
            return b0 + (b1 - b0) * (target_ssim - s0) / (s1 - s0) if s1 > s0 else b0
    return float("nan")


def children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def ours(binary: str, photo: Path, out: Path) -> tuple[float, dict[tuple[str, int], Path]]:
    """CPU time per ladder (the example's process, all its threads, over RUNS runs; its
    start and the photo's read are in it)."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, RUNS=str(RUNS), OUT=str(out))
    before = children_cpu_ms()
    subprocess.run([binary, str(photo)], env=env, check=True, capture_output=True, text=True)
    ms = (children_cpu_ms() - before) / RUNS
    files = {}
    for path in out.glob(f"{photo.stem}-*"):
        width = int(path.stem.rsplit("-", 1)[1])
        files[(path.suffix[1:], width)] = path
    return ms, files


def vips_ladder(photo: Path, out: Path) -> tuple[float, dict[tuple[str, int], Path]]:
    """CPU time per ladder (this process, all threads: libheif and aom start their own)."""
    out.mkdir(parents=True, exist_ok=True)
    times = []
    files = {}
    for _ in range(RUNS):
        started = time.process_time()
        for width in WIDTHS:
            for ext, options in (("avif", f"Q={VIPS_AVIF_Q},strip"), ("webp", f"Q={VIPS_WEBP_Q},strip")):
                path = out / f"{photo.stem}-{width}.{ext}"
                thumb = thumbnail(photo, width)
                thumb.write_to_file(f"{path}[{options}]")
                files[(ext, width)] = path
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times), files


def main(binary: str, photos: str, work: str) -> None:
    pyvips.cache_set_max(0)
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    summary = []
    print(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, one thread each, median of {RUNS} runs; "
          f"ours: IMAGE_AVIF_QUALITY={os.environ.get('IMAGE_AVIF_QUALITY', 'default')}, "
          f"IMAGE_AVIF_SPEED={os.environ.get('IMAGE_AVIF_SPEED', 'default')}, "
          f"IMAGE_AVIF_MODE={os.environ.get('IMAGE_AVIF_MODE', 'default')}, "
          f"IMAGE_AVIF_SEARCH={os.environ.get('IMAGE_AVIF_SEARCH', 'default')}; libvips: WebP Q {VIPS_WEBP_Q}, AVIF Q {VIPS_AVIF_Q}\n")
    for photo in sorted(Path(photos).glob("*.jpg")):
        source = pyvips.Image.new_from_file(str(photo))
        our_ms, our_files = ours(binary, photo, work_dir / "ours")
        vips_ms, vips_files = vips_ladder(photo, work_dir / "vips")
        print(f"### {photo.name}: ours {our_ms:.0f} ms, libvips {vips_ms:.0f} ms, ratio {our_ms / vips_ms:.2f}\n")
        print("| variant | ours bytes | libvips bytes | bytes ratio | ours SSIM | libvips SSIM |")
        print("|---|---:|---:|---:|---:|---:|")
        for ext in ("avif", "webp"):
            for w in WIDTHS:
                if (ext, w) not in our_files or (ext, w) not in vips_files:
                    continue
                a = pyvips.Image.new_from_file(str(our_files[(ext, w)]))
                b = pyvips.Image.new_from_file(str(vips_files[(ext, w)]))
                ref_a = reference(source, a.width, a.height)
                ref_b = ref_a if (b.width, b.height) == (a.width, a.height) else reference(source, b.width, b.height)
                sa, sb = ssim(luma(a), ref_a), ssim(luma(b), ref_b)
                ba, bb = our_files[(ext, w)].stat().st_size, vips_files[(ext, w)].stat().st_size
                print(f"| {ext} {w} | {ba} | {bb} | {ba / bb:.2f} | {sa:.4f} | {sb:.4f} |")
                summary.append((photo.name, ext, w, ba, bb, sa, sb))
                if ext == "avif" and w == 1280:
                    equal = vips_avif_bytes_at(photo, source, sa, work_dir / "vips")
                    summary.append((photo.name, "avif-equal-ssim", w, ba, equal, sa, sa))
        print()
        summary.append((photo.name, "time", 0, our_ms, vips_ms, 0, 0))
    times = [(a, b) for (_, ext, _, a, b, _, _) in summary if ext == "time"]
    print("### Summary\n")
    print(f"- time, ours / libvips (median over photos): {statistics.median(a / b for a, b in times):.2f}")
    for ext in ("avif", "webp"):
        rows = [r for r in summary if r[1] == ext and r[2] == 1280]
        if rows:
            print(f"- {ext} at 1280 w, median: bytes ours / libvips {statistics.median(r[3] / r[4] for r in rows):.2f}, "
                  f"SSIM ours {statistics.median(r[5] for r in rows):.4f} vs libvips {statistics.median(r[6] for r in rows):.4f}")
    equal = [r for r in summary if r[1] == "avif-equal-ssim"]
    if equal:
        ratios = ", ".join(f"{r[3] / r[4]:.2f}" for r in equal)
        print(f"- avif at 1280 w, ours / libvips at our SSIM (libvips's bytes interpolated over its Q 40-80): "
              f"median {statistics.median(r[3] / r[4] for r in equal):.2f} (per photo: {ratios})")
    avif = {r[0]: r for r in summary if r[1] == "avif" and r[2] == 1280}
    webp = {r[0]: r for r in summary if r[1] == "webp" and r[2] == 1280}
    both = [p for p in avif if p in webp]
    if both:
        print(f"- ours at 1280 w, AVIF against WebP, median: bytes {statistics.median(avif[p][3] / webp[p][3] for p in both):.2f}x, "
              f"SSIM {statistics.median(avif[p][5] for p in both):.4f} vs {statistics.median(webp[p][5] for p in both):.4f} "
              f"(AVIF no worse on {sum(avif[p][5] >= webp[p][5] for p in both)} of {len(both)} photos)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
