"""Knowledge retention for fine-tuning (Wołczyk et al., ICML 2024): the `[finetune]` config section, the
retention losses, one term object per method, and the episodic memory of DQN fine-tuning."""
