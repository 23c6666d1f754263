"""Hostile programs for the sandbox attack suite (``test_sandbox_attacks.py``): the catalog
(``catalog.py``), the shared host-side targets (``arena.py``) and the judge process that runs
them (``judge.py``)."""
