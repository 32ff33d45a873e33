"""Reading finished runs: group comparisons with rliable, fine-tuning and continual-learning reports."""
