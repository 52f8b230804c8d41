"""Evaluation beyond one edit at a time: sequential runs of many edits, and what they damage."""
