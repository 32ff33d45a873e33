"""Neural-network parts the agents share: observation encoders (MLP, conv, NetHack), weight init, the Decision
Transformer and its attention and memory, LoRA, and the plasticity tools (GMP pruning, NaP, RND, diagnostics);
the optional components: Adam with critical momenta (and the optimizer choice), adaptive temperature,
structured feed-forward layers with self-guided training, and the LRU recurrent core."""
