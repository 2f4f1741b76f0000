"""Reliability and security: torn reads, bad inputs, faults, fuzzing, safe defaults."""
