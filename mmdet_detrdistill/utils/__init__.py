"""Checkpoint loading and student export."""
