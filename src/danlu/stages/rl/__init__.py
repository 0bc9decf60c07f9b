"""Internals of the reinforcement-learning stages (ppo, grpo, rloo): prompt data, reward
functions and reward models, and danlu's own PPO. Import-light: torch, transformers and TRL are
imported by the modules that need them, when a run builds its trainer."""
