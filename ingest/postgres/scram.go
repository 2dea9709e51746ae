package postgres

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
)

const (
	scramMechanism     = "SCRAM-SHA-256"
	scramPlusMechanism = "SCRAM-SHA-256-PLUS"
)

// maxSCRAMIterations bounds the work a hostile or misconfigured target can demand
// (PostgreSQL's default is 4096).
const maxSCRAMIterations = 1 << 22

// scramClient is the client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as
// PostgreSQL uses it: empty username (the startup user counts), and channel
// binding (SCRAM-SHA-256-PLUS, tls-server-end-point) when the connection is TLS
// and the server offers it.
type scramClient struct {
	password        string
	clientNonce     string
	clientFirstBare string
	serverSignature []byte
	// gs2Header is "n,," (no TLS), "y,," (TLS, the server offers no binding) or
	// "p=tls-server-end-point,,"; empty means "n,,".
	gs2Header string
	cbindData []byte // the hash of the server's certificate with "p="
}

// newSCRAMClient prepares the exchange; tlsState is nil without TLS.
func newSCRAMClient(password string, mechanisms []string, tlsState *tls.ConnectionState) (*scramClient, string, error) {
	nonce := make([]byte, 18)
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	c := &scramClient{password: password, clientNonce: base64.RawStdEncoding.EncodeToString(nonce)}
	c.clientFirstBare = "n=,r=" + c.clientNonce
	plus, plain := slices.Contains(mechanisms, scramPlusMechanism), slices.Contains(mechanisms, scramMechanism)
	switch {
	case tlsState != nil && plus && len(tlsState.PeerCertificates) > 0:
		c.gs2Header = "p=tls-server-end-point,,"
		c.cbindData = tlsServerEndPoint(tlsState.PeerCertificates[0])
		return c, scramPlusMechanism, nil
	case !plain:
		return nil, "", fmt.Errorf("target offers SASL mechanisms %v; the gateway speaks %s and %s", mechanisms, scramPlusMechanism, scramMechanism)
	case tlsState != nil:
		// "y": we could bind but the server did not offer it. A server that does
		// support binding, reached through a downgrading middleman, then refuses.
		c.gs2Header = "y,,"
	default:
		c.gs2Header = "n,,"
	}
	return c, scramMechanism, nil
}

// tlsServerEndPoint is RFC 5929's channel binding data: the hash of the server's
// certificate with its signature's hash function (SHA-256 for MD5 and SHA-1).
func tlsServerEndPoint(cert *x509.Certificate) []byte {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write(cert.Raw)
	return h.Sum(nil)
}

func (c *scramClient) header() string {
	if c.gs2Header == "" {
		return "n,,"
	}
	return c.gs2Header
}

// clientFirst is the SASLInitialResponse data.
func (c *scramClient) clientFirst() []byte { return []byte(c.header() + c.clientFirstBare) }

// clientFinal answers the server-first-message with the proof.
func (c *scramClient) clientFinal(serverFirst []byte) ([]byte, error) {
	attrs, err := scramAttrs(string(serverFirst))
	if err != nil {
		return nil, err
	}
	nonce, saltB64, iterStr := attrs["r"], attrs["s"], attrs["i"]
	if !strings.HasPrefix(nonce, c.clientNonce) || len(nonce) == len(c.clientNonce) {
		return nil, errors.New("SCRAM: server nonce does not extend the client nonce")
	}
	salt, err := base64.StdEncoding.DecodeString(saltB64)
	if err != nil || len(salt) == 0 {
		return nil, errors.New("SCRAM: invalid salt")
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < 1 || iter > maxSCRAMIterations {
		return nil, fmt.Errorf("SCRAM: iteration count %q out of range 1..%d", iterStr, maxSCRAMIterations)
	}
	salted, err := pbkdf2.Key(sha256.New, c.password, salt, iter, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("SCRAM: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	// c= is the GS2 header and the binding data: "biws" (base64 "n,,") without TLS.
	cbind := base64.StdEncoding.EncodeToString(append([]byte(c.header()), c.cbindData...))
	withoutProof := "c=" + cbind + ",r=" + nonce
	authMessage := c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	clientSig := hmacSHA256(storedKey[:], authMessage)
	proof := make([]byte, len(clientKey))
	subtle.XORBytes(proof, clientKey, clientSig)
	c.serverSignature = hmacSHA256(hmacSHA256(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verifyServerFinal checks the server's signature, proving it knew the password
// verifier: a target impersonator learns nothing usable and is detected.
func (c *scramClient) verifyServerFinal(serverFinal []byte) error {
	attrs, err := scramAttrs(string(serverFinal))
	if err != nil {
		return err
	}
	if e, ok := attrs["e"]; ok {
		return fmt.Errorf("SCRAM: server error %q", e)
	}
	sig, err := base64.StdEncoding.DecodeString(attrs["v"])
	if err != nil || c.serverSignature == nil || !hmac.Equal(sig, c.serverSignature) {
		return errors.New("SCRAM: server signature does not verify")
	}
	return nil
}

func scramAttrs(msg string) (map[string]string, error) {
	attrs := map[string]string{}
	for _, part := range strings.Split(msg, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || len(k) != 1 {
			return nil, fmt.Errorf("SCRAM: malformed message %q", truncate(msg, 64))
		}
		attrs[k] = v
	}
	return attrs, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// md5Password is PostgreSQL's md5 response: "md5" + md5(md5(password+user) + salt).
func md5Password(user, password string, salt [4]byte) string {
	inner := md5.Sum([]byte(password + user))
	outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), salt[:]...))
	return "md5" + hex.EncodeToString(outer[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// saslMechanisms parses an AuthenticationSASL body (after the auth type).
func saslMechanisms(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i <= 0 {
			break
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}
