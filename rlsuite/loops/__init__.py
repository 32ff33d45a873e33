"""What a run does step by step: the online loop (env steps), the offline loop (gradient updates on datasets), task sequences and fine-tuning."""
