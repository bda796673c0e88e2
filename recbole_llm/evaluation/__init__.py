r"""Evaluation: group metrics (cold/warm items, user history length, item popularity) registered
with RecBole's metric registry, and the collector that gathers what they need."""
