"""What is done with a trained agent: load it as a policy, record videos of it, export it, merge several
(`rlsuite merge`: merge.py, with the matching maths in alignment.py)."""
