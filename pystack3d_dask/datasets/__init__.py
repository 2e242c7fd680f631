"""Synthetic stacks with their ground truth, quality scores against it, and the demo."""
