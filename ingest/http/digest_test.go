package httpproxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// bodyDigest hashes a recorded body as its frames arrive, so large bodies are
// compared without being kept.
type bodyDigest struct {
	h hash.Hash
	n int64
}

func newBodyDigest() *bodyDigest { return &bodyDigest{h: sha256.New()} }

func (d *bodyDigest) add(p []byte) { d.h.Write(p); d.n += int64(len(p)) }

func (d *bodyDigest) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
