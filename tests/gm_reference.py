"""The independent SM2 check lives in bench/gm_reference.py now, where the chaos
checker (bench/chaos_check.py) can use it too (bench may not import tests/).
Kept here so the tests that import it need no change."""

from bench.gm_reference import gm_verify, textbook_verify

__all__ = ["gm_verify", "textbook_verify"]
