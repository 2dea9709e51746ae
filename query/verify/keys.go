package verify

import (
	"crypto/ed25519"

	"github.com/tapline/tapline/keyfile"
)

// ParsePublicKey reads a trusted key given as 64 hex digits (the form a report shows
// as signature.key), base64, or a key file; see keyfile.ParsePublic.
func ParsePublicKey(s string) (ed25519.PublicKey, error) { return keyfile.ParsePublic(s) }
