"""The `danlu data` workbench: inspect, validate, render, clean, dedup, scrub (pii), decontam, split,
convert and mix — tools for a person looking at data files; only the CLI and the UI import them."""
