"""Hyper-parameter search (`danlu sweep`): runs whole trainings, so it sits above train/ and plan/."""
