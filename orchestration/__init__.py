"""Wiring: one Definitions object built from every domain's assets, jobs and resources."""
