"""Settings (EBILL_* environment variables) and tuning constants.

Layer 2: imports nothing above engine.
"""
