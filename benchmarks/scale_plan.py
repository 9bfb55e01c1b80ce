"""The ``scale`` scenario's report section: tiles per second by worker count, and a plan on paper for 100 workers.

The plan is arithmetic on the measured per-tile cost and chunk sizes, not a
measurement: what a scheduler and an object store would have to sustain for
the same tiles on a hundred such workers.
"""

from __future__ import annotations

PLAN_WORKERS = 100
TASK_OVERHEAD_S = (200e-6, 1e-3)
"""Scheduler time per task, from Dask's best-practices page ("somewhere between 200us and 1ms")."""
S3_PREFIX_RATES = (5500, 3500)
"""GET/HEAD and PUT requests per second per S3 prefix (AWS's documented minimum, before it partitions further)."""


def scale_section(summary, meta) -> list[str]:
    """Markdown lines: the measured table, the efficiency, and the plan for :data:`PLAN_WORKERS` workers."""
    runs = {(shape, v["details"]["workers"]): v for (_, shape, _), v in summary.items() if v.get("details")}
    if not runs:
        return ["No cluster rows in this run."]
    lines = [f"Scaling efficiency = tiles/s of N workers / (N x tiles/s of 1 worker). The load average was "
             f"{meta['load_before']:.1f} before the run and {meta['load_after']:.1f} after it on {meta['cpu']}: "
             "where it exceeds the cores, other work competes with the workers and the figures measure it too.", "",
             "| image | worker processes | tiles | seconds | tiles/s | s per tile per worker | scaling efficiency |",
             "|---|---|---|---|---|---|---|"]
    for (shape, workers), v in sorted(runs.items(), key=lambda kv: (kv[0][0][0], kv[0][1])):
        d = v["details"]
        rate = d["n_tiles"] / v["seconds"]
        one = runs.get((shape, 1))
        efficiency = "–" if one is None else f"{rate / (workers * one['details']['n_tiles'] / one['seconds']):.0%}"
        lines.append(f"| {'x'.join(map(str, shape))} | {workers} | {d['n_tiles']} | {v['seconds']:.3g} | "
                     f"{rate:.3g} | {workers * v['seconds'] / d['n_tiles']:.3g} | {efficiency} |")
    shape = max((s for s, w in runs if w == 1), key=lambda s: s[0], default=None)
    if shape is None:
        return lines
    return lines + [""] + _paper_plan(runs[(shape, 1)], shape)


def _paper_plan(one, shape) -> list[str]:
    d = one["details"]
    per_tile = one["seconds"] / d["n_tiles"]
    tile, halo = d["tile_edge"], d["halo"]
    tasks = PLAN_WORKERS / per_tile
    chunks_read = 3 ** len(shape) if halo else 1  # the read square reaches into every neighbouring chunk
    read_bytes, written = chunks_read * d["input_chunk_bytes"], d["output_chunk_bytes"]
    gets, puts = tasks * (chunks_read + 1), tasks * 2  # input chunks + the marker check; the chunk + its marker
    low, high = (tasks * t for t in TASK_OVERHEAD_S)
    return [
        f"### {PLAN_WORKERS} workers on an object store: a plan on paper, not a measurement",
        "",
        f"From the 1-worker run on {'x'.join(map(str, shape))}: one worker (one core, one Numba thread) classifies a "
        f"{tile}² tile (read with a halo of {halo} px) in {per_tile:.3g} s; a label chunk is stored in "
        f"{written / 1e3:.3g} kB and an input chunk ({tile}² float32) in {d['input_chunk_bytes'] / 1e6:.3g} MB. "
        f"For the same tiles on {PLAN_WORKERS} such workers:",
        "",
        f"- **Scheduler:** {tasks:.3g} tasks/s to assign and retire (one task per tile). At Dask's 200 µs to 1 ms of "
        f"scheduler time per task that is {low:.2g} to {high:.2g} s of scheduler work per second: "
        + ("within one scheduler's reach." if high < 0.5 else
           "too close to a scheduler's limit; use larger tiles (cost grows with the tile's area, overhead does not)."),
        f"- **Bytes per tile:** reads {read_bytes / 1e6:.3g} MB (the {chunks_read} input chunks its read region "
        f"touches: each input chunk is fetched by up to {chunks_read} tiles, unless the input's chunks are larger "
        f"than the tiles), writes {written / 1e3:.3g} kB of labels and an empty marker. In all "
        f"{tasks * read_bytes / 1e9:.3g} GB/s in and {tasks * written / 1e6:.3g} MB/s out.",
        f"- **Requests:** {chunks_read + 1} GET/HEAD (input chunks, the marker check of a retried task) and 2 PUT "
        f"(chunk, then marker) per tile: {gets:.3g} GET/HEAD/s and {puts:.3g} PUT/s, against S3's "
        f"{S3_PREFIX_RATES[0]} and {S3_PREFIX_RATES[1]} per second per prefix"
        + (": within one prefix." if gets < S3_PREFIX_RATES[0] and puts < S3_PREFIX_RATES[1] else
           ": over one prefix's rate; spread outputs over prefixes or use larger tiles."),
        "- **GPU workers** classify a tile many times faster: every rate above grows by that factor, and tiles "
        "larger in proportion keep the scheduler's and the store's rates where they are.",
        "- **Resuming** costs one listing of the markers per output (a LIST of 1000 keys per request), then only "
        "the missing tiles are submitted.",
    ]
