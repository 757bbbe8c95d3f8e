"""Helpers the tests share, and the harness the benchmarks start gateways with: a gateway in this
process (`live.LiveServer`) or in a process of its own (`process.GatewayProcess`, with free_port
and the kernel's readings of a process), waiting for a state (`wait`), and the one WER scorer
(`wer`, the benchmarks' too, so a figure in a test and one in docs/benchmarks.md mean the same
thing); and the pieces two test files would otherwise each write: the OpenAI error check
(`errors`), faults put into a real engine (`faults`), PyAV muxing (`media`) and a model variant
made from its source (`variants`). Nothing here imports the benchmarks."""
