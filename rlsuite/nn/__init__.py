"""Neural-network parts the agents share: observation encoders (MLP, conv, NetHack), weight init, the Decision
Transformer and its attention and memory, LoRA, and the plasticity tools (GMP pruning, NaP, RND, diagnostics)."""
