"""Helpers the tests share: a gateway to test against (`process`), waiting for a state (`wait`).
The WER scorer is the benchmarks' (`gateway.bench.accuracy.wer`), so a figure in a test and one
in docs/benchmarks.md mean the same thing."""
