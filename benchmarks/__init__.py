"""loginetl's benchmarks and its fuzzer, run from the checkout's root (see README.md here)."""
