"""Data past memory (issue 21): how a study's memory, set-up and speed grow with its size.

    python bench/scale.py [--sizes 1000 10000] [--steps 30] [--texts 1000000]
        [--one-core-sizes 10000 100000]

Generates 224 px JPEGs with short texts (a manifest, `data=manifest`) into bench/out/ (git-
ignored; nothing is committed), then for each size runs the CNN study (model=image_cnn at
224 px) in a process of its own, twice: with an empty cache (the decoded store is built) and
again (the store is reused). Each run measures

- peak anonymous memory (RssAnon, which excludes the page cache and memory-mapped files the
  kernel can drop) summed over the run's process and all its children (store builders, data
  loader workers), sampled every 50 ms, for set-up and for training separately;
- set-up wall time and the cores it kept busy (CPU time of the process and its children over
  wall time), i.e. the store build;
- training throughput (images/s: batch / median step, the first step left out) of emoclip's
  Trainer over the store, and in the same process a bare PyTorch loop (the same network,
  optimiser, normalisation and augmentation) over the same uint8 images held in memory.

`--texts N` runs a text study (model=text_lstm) set-up over N generated short texts and reports
its peak RssAnon. Results go into bench/RESULTS.md between the scale markers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from results_file import markers, write_section

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
MARKERS = markers("scale")
CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
WORDS = [
    "the",
    "a",
    "my",
    "this",
    "day",
    "night",
    "rain",
    "sun",
    "friend",
    "home",
    "work",
    "city",
    "road",
    "food",
    "music",
    "film",
    "game",
    "book",
    "team",
    "news",
    "love",
    "hate",
    "fear",
    "joy",
    "wait",
    "run",
    "walk",
    "talk",
    "feel",
    "see",
    "hear",
    "lost",
    "found",
    "happy",
    "sad",
    "angry",
    "calm",
    "late",
    "early",
    "again",
    "never",
    "always",
    "really",
    "so",
    "very",
    "quite",
    "today",
    "tomorrow",
    "yesterday",
]
SIZE = 224
BATCH = 32


# --- data --------------------------------------------------------------------------------------


def _write_image(args: tuple[Path, int]) -> None:
    import numpy as np
    from PIL import Image

    path, i = args
    rng = np.random.default_rng(i)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    noisy = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, (SIZE, SIZE, 3))
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=85)


def text_of(i: int) -> str:
    rng = random.Random(i)
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + f" #{i}"


def generate_images(n: int) -> Path:
    """bench/out/images_<n>/manifest.csv with n images (made once, kept for later runs)."""
    import csv
    from multiprocessing import Pool

    folder = OUT / f"images_{n}"
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        return manifest
    (folder / "img").mkdir(parents=True, exist_ok=True)
    jobs = [(folder / "img" / f"{i:07d}.jpg", i) for i in range(n)]
    started = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_image, jobs, chunksize=256)
    with open(folder / ".manifest.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "text", "label"])
        for path, i in jobs:
            out.writerow([f"img/{path.name}", text_of(i), CLASSES[i % len(CLASSES)]])
    (folder / ".manifest.csv").replace(manifest)
    print(f"generated {n} images in {time.perf_counter() - started:.0f} s", flush=True)
    return manifest


def read_images(folder: Path) -> None:
    """Read every image file once, so that a build's time does not depend on what the page
    cache held."""
    for path in (folder / "img").iterdir():
        path.read_bytes()


def generate_texts(n: int) -> Path:
    import csv

    manifest = OUT / f"texts_{n}.csv"
    if not manifest.is_file():
        with open(OUT / ".texts.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["text", "label"])
            for i in range(n):
                out.writerow([text_of(i), CLASSES[i % len(CLASSES)]])
        (OUT / ".texts.csv").replace(manifest)
    return manifest


# --- measuring ---------------------------------------------------------------------------------


class AnonPeak:
    """Samples RssAnon of this process and all its descendants every 50 ms; keeps the peak per
    phase (set `phase`). Also Pss_Anon: a forked child's RssAnon counts the pages it still
    shares with its parent (copy-on-write) again, Pss_Anon splits them among the sharers."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()
        self.phase, self.peaks, self.pss_peaks = "start", {}, {}
        self.processes = 1
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _field(path: str, name: str) -> int:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(name):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self.stop.is_set():
            pids = [self.me.pid] + [c.pid for c in self.me.children(recursive=True)]
            total = sum(self._field(f"/proc/{p}/status", "RssAnon:") for p in pids)
            pss = sum(self._field(f"/proc/{p}/smaps_rollup", "Pss_Anon:") for p in pids)
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), total)
            self.pss_peaks[self.phase] = max(self.pss_peaks.get(self.phase, 0), pss)
            self.processes = max(self.processes, len(pids))
            time.sleep(0.05)

    def close(self) -> dict:
        self.stop.set()
        self.thread.join()
        mb = {k: round(v / 2**20) for k, v in self.peaks.items()}
        return {**mb, **{f"pss_{k}": round(v / 2**20) for k, v in self.pss_peaks.items()}}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def worker_images(
    manifest: Path, cache: Path, steps: int, size: int, run_dir: Path, workers: str = "null"
) -> dict:
    import torch
    from throughput import clock_callback, compose

    from emoclip.data.images import augment, normalize
    from emoclip.study.build import build_study, build_trainer, prepare_process

    peak = AnonPeak()
    overrides = [
        "data=manifest",
        f"data.root={manifest}",
        "model=image_cnn",
        f"model.image_tower.image_size={size}",
        f"data.batch_size={BATCH}",
        "trainer.max_epochs=1",
        f"++trainer.limit_train_batches={steps}",
        "trainer.accelerator=cpu",
        f"paths.cache_dir={cache}",
        f"data.num_workers={workers}",
    ]
    cfg = compose(overrides, run_dir)
    prepare_process(cfg.seed)
    peak.phase = "setup"
    wall, cpu = time.perf_counter(), cpu_seconds()
    study = build_study(cfg)
    study.datamodule.setup("fit")
    setup_wall, setup_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    peak.phase = "train"
    clock = clock_callback()
    trainer = build_trainer(cfg, study_callbacks=[*study.callbacks, clock])
    trainer.fit(study.module, datamodule=study.datamodule)
    emoclip_step = statistics.median(clock.steps[1:])
    workers = study.datamodule._workers()

    # The bare loop: the same images, copied into memory as one uint8 tensor.
    peak.phase = "bare"
    dm, network = study.datamodule, study.module.network
    train = dm.encoded["train"]
    count = min(len(train), steps * BATCH)
    pixels, labels = train.pixels[:count].clone(), train.labels[:count].clone()
    from hydra.utils import instantiate

    optimizer = instantiate(cfg.model.optimizer)(network.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    network.train()
    times, last = [], time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        rows = torch.randint(count, (BATCH,), generator=generator)
        keys = [(0, 0, int(r)) for r in rows]
        x = normalize(augment(pixels[rows], keys, dm.mean, **dm.augment), dm.mean, dm.std)
        loss = loss_fn(network({"pixel_values": x, "labels": labels[rows]}), labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    bare_step = statistics.median(times[1:])
    peaks = peak.close()
    store = dm.encoded["train"].pixels_file
    return {
        "images": sum(len(d) for d in dm.encoded.values()),
        "train_images": len(train),
        "setup_s": setup_wall,
        "setup_cores": setup_cpu / setup_wall,
        "peak_anon_mb": peaks,
        "processes": peak.processes,
        "workers": workers,
        "emoclip_img_s": BATCH / emoclip_step,
        "bare_img_s": BATCH / bare_step,
        "store": store[0] if store else None,
    }


def worker_texts(manifest: Path, cache: Path, run_dir: Path) -> dict:
    from throughput import compose

    from emoclip.study.build import build_study, prepare_process

    peak = AnonPeak()
    cfg = compose(
        ["data=manifest", f"data.root={manifest}", "model=text_lstm", f"paths.cache_dir={cache}"],
        run_dir,
    )
    prepare_process(cfg.seed)
    peak.phase = "setup"
    wall = time.perf_counter()
    study = build_study(cfg)
    study.datamodule.setup("fit")
    seconds = time.perf_counter() - wall
    return {
        "texts": sum(len(d) for d in study.datamodule.encoded.values()),
        "setup_s": seconds,
        "peak_anon_mb": peak.close(),
    }


# --- the driver ----------------------------------------------------------------------------------


def run_worker(*args: str, one_core: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(BENCH)])}
    env.setdefault("OMP_NUM_THREADS", "1")
    # One core: the process may run on CPU 0 only, so the store is decoded by one process.
    pinned = ["taskset", "-c", "0"] if one_core else []
    result = subprocess.run(
        [*pinned, sys.executable, __file__, "--worker", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        sys.exit(f"worker {args} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--steps", type=int, default=3, help="training steps at 224 px")
    parser.add_argument("--speed-size", type=int, default=64, help="image size of the speed runs")
    parser.add_argument("--speed-steps", type=int, default=30)
    parser.add_argument("--texts", type=int, default=0)
    parser.add_argument(
        "--one-core-sizes",
        type=int,
        nargs="*",
        default=[10000],
        help="also build these sizes' stores on one core (taskset), for the build's speed-up",
    )
    parser.add_argument("--beside", default="", help="what else ran on the machine (for RESULTS)")
    parser.add_argument("--worker", nargs="+")
    parser.add_argument("--report-from", help="a log of an earlier run: write its section again")
    args = parser.parse_args()
    if args.report_from:
        rows = [
            json.loads(x) for x in Path(args.report_from).read_text().splitlines() if x[:1] == "{"
        ]
        texts = next((r for r in rows if "texts" in r), None)
        write_section("scale", report([r for r in rows if "texts" not in r], texts, args))
        return
    if args.worker:
        kind, *rest = args.worker
        if kind == "images":
            manifest, cache, steps, size, run_dir, *workers = rest
            result = worker_images(
                Path(manifest), Path(cache), int(steps), int(size), Path(run_dir), *workers
            )
        else:
            manifest, cache, run_dir = rest
            result = worker_texts(Path(manifest), Path(cache), Path(run_dir))
        print(json.dumps(result))
        return
    OUT.mkdir(exist_ok=True)
    rows = []
    for n in args.sizes:
        manifest = generate_images(n)
        cache = OUT / f"cache_{n}"
        shutil.rmtree(cache, ignore_errors=True)
        plan = [("built", SIZE, args.steps), ("reused", SIZE, args.steps)]
        if n in args.one_core_sizes:
            plan.insert(0, ("built on 1 core", SIZE, args.steps))
        plan += [("speed", args.speed_size, args.speed_steps)] if args.speed_steps else []
        if args.speed_steps and n == max(args.sizes):  # the loader's augmentation in a worker
            plan.append(("speed, 1 loader worker", args.speed_size, args.speed_steps))
        for label, size, steps in plan:
            run_dir = OUT / f"run_{n}_{label.replace(' ', '_').replace(',', '')}"
            shutil.rmtree(run_dir, ignore_errors=True)
            one_core = label == "built on 1 core"
            if label.startswith("built"):
                read_images(manifest.parent)  # both builds start from a warm page cache
            result = run_worker(
                "images",
                str(manifest),
                str(OUT / f"cache_{n}_1core" if one_core else cache),
                str(steps),
                str(size),
                str(run_dir),
                "1" if "worker" in label else "null",
                one_core=one_core,
            )
            if one_core:
                shutil.rmtree(OUT / f"cache_{n}_1core", ignore_errors=True)
            result.update(n=n, store_state=label, size=size, steps=steps)
            print(json.dumps(result), flush=True)
            rows.append(result)
    texts = None
    if args.texts:
        manifest = generate_texts(args.texts)
        cache = OUT / "cache_texts"
        texts = run_worker("texts", str(manifest), str(cache), str(OUT / "run_texts"))
        texts["n"] = args.texts
        print(json.dumps(texts), flush=True)
    write_section("scale", report(rows, texts, args))


def report(rows: list[dict], texts: dict | None, args) -> str:
    begin, end = MARKERS
    lines = [
        begin,
        "## Data past memory (issue 21): bench/scale.py",
        "",
        f"`OMP_NUM_THREADS=1 python bench/scale.py --sizes {' '.join(map(str, args.sizes))} "
        f"--steps {args.steps} --speed-size {args.speed_size} --speed-steps {args.speed_steps}"
        + (f" --texts {args.texts}" if args.texts else "")
        + f" --one-core-sizes {' '.join(map(str, args.one_core_sizes))}"
        + "`",
        f"on {os.cpu_count()} cores; beside it: {args.beside or 'not recorded'}. CNN study "
        f"(model=image_cnn), batch {BATCH}, generated {SIZE} px JPEGs. Peak RssAnon in MB, "
        "summed over the run's processes (set-up / training / bare loop), and in brackets "
        "Pss_Anon (shared copy-on-write pages of forked children counted once). `built`: "
        "empty cache, "
        "the store is decoded; `reused`: the same again; `speed`: throughput at a smaller size "
        "(its own store), as 224 px steps take seconds each on these cores.",
        "",
        "| images | run | px | steps | set-up s | set-up cores | RssAnon set-up | training | "
        "bare | workers | emoclip img/s | bare img/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["peak_anon_mb"]
        lines.append(
            f"| {r['images']} | {r['store_state']} | {r['size']} | {r['steps']} | "
            f"{r['setup_s']:.1f} | {r['setup_cores']:.2f} | {_mb(p, 'setup')} | "
            f"{_mb(p, 'train')} | {_mb(p, 'bare')} | {r['workers']} | "
            f"{r['emoclip_img_s']:.1f} | {r['bare_img_s']:.1f} | "
            f"{r['emoclip_img_s'] / r['bare_img_s']:.2f} |"
        )
    one_core = {r["n"]: r for r in rows if r["store_state"] == "built on 1 core"}
    for r in rows:
        if r["store_state"] == "built" and r["n"] in one_core:
            alone = one_core[r["n"]]
            lines += [
                "",
                f"Store build at {r['images']} images: {alone['setup_s']:.1f} s on one core "
                f"(taskset), {r['setup_s']:.1f} s on {os.cpu_count()}: "
                f"**{alone['setup_s'] / r['setup_s']:.2f}x** (set-up in all: records, file "
                "digests, decoding and writing the store; the image files read beforehand "
                "for both).",
            ]
    lines += extrapolation(rows)
    if texts:
        lines += [
            "",
            f"Texts (model=text_lstm set-up, records to token arrays): {texts['texts']} texts, "
            f"{texts['setup_s']:.0f} s, peak RssAnon {_mb(texts['peak_anon_mb'], 'setup')} MB.",
        ]
    lines.append(end)
    return "\n".join(lines)


def extrapolation(rows: list[dict]) -> list[str]:
    """Cost per image from the two largest sizes (the slope, so fixed costs drop out), and
    what it gives at 100k and 1M images."""
    reused = sorted((r for r in rows if r["store_state"] == "reused"), key=lambda r: r["images"])
    built = sorted((r for r in rows if r["store_state"] == "built"), key=lambda r: r["images"])
    if len(reused) < 2 or len(built) < 2:
        return []
    (a, b), (c, d) = reused[-2:], built[-2:]
    extra = b["images"] - a["images"]
    anon = (b["peak_anon_mb"]["pss_setup"] - a["peak_anon_mb"]["pss_setup"]) * 2**20 / extra
    train = b["peak_anon_mb"]["pss_train"] - a["peak_anon_mb"]["pss_train"]
    build = (d["setup_s"] - c["setup_s"]) / (d["images"] - c["images"])
    disk = 3 * SIZE * SIZE
    lines = [
        "",
        f"Per image, from {a['images']} to {b['images']} images: set-up anonymous memory "
        f"{anon:.0f} B (Pss_Anon, store reused), store build {build * 1000:.1f} ms wall on "
        f"these cores, {disk / 1024:.0f} KiB of disk (page cache). Training's peak grew by "
        f"{train} MB in all ({a['workers']} loader workers at {a['images']}, "
        f"{b['workers']} at {b['images']}).",
        "",
        "| images | set-up anon. memory (extrapolated) | store build | store on disk |",
        "|---|---|---|---|",
    ]
    for n in (n for n in (100_000, 1_000_000) if n > b["images"]):  # beyond what was run
        base = b["peak_anon_mb"]["pss_setup"] * 2**20 + anon * (n - b["images"])
        lines.append(
            f"| {n:,} | {base / 2**30:.2f} GiB | {build * n / 60:.0f} min | "
            f"{disk * n / 2**30:.0f} GiB |"
        )
    return lines


def _mb(peaks: dict, phase: str) -> str:
    return f"{peaks.get(phase, 0)} ({peaks.get('pss_' + phase, 0)})"


if __name__ == "__main__":
    main()
