-- The fiscal platform's signature over a bill's QR facts (engine/qr.py), given
-- with its countersignature: the QR on the bill and the notice slip carries it, so
-- any app holding the platform's public key verifies the QR offline. NULL on bills
-- countersigned before the platform signed QR facts.
ALTER TABLE bills ADD COLUMN qr_signature bytea;
