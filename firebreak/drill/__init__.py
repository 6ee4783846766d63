"""Faults under load, judged from a recorded history."""
