"""Image IO, paired benchmark folders and procedural rain (no model code here)."""
