-- The processor's signature over a masked frame (frame schema v2): the signing key's
-- 32 bytes followed by the 64-byte Ed25519 signature; empty on frames not masked.
ALTER TABLE frames ADD COLUMN IF NOT EXISTS processor_sig String DEFAULT '' CODEC(ZSTD(1))
