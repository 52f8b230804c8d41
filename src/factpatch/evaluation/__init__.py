"""Evaluation: the paper's metrics for one edit at a time and for sequential runs of many, what
edits damage beyond their facts, and the summaries written beside the records."""
