"""The gpuseg benchmark suite: ``python -m benchmarks --help``.

Runs scikit-image's recipe, gpuseg on the CPU and GPU, and stock cuCIM + cuML
on the same images with the same parameters, each runner and image size in a
fresh process, and writes ``results.jsonl``, ``report.md`` and plots.
"""
