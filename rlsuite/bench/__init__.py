"""`rlsuite bench`: measurements of rlsuite. Training throughput against the libraries it stands beside (SB3,
Hugging Face transformers, the raw env and replay libraries), what its fast modes do to each network, and
the plasticity benchmark. A bench against a peer is a settings module both sides build from, the runner, and
the peer side; the harness they share (fresh processes, malloc settings, the timing record) is rlsuite.bench.harness."""
