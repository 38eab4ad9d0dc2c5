"""The core: Algorithm 1 (``train``), the trajectory stores, queries and the estimators
(Algorithm 2 and its baselines), on torch, numpy and scipy alone. See docs/design.md."""
