package sshproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// upstream is an authenticated connection to the target.
type upstream struct {
	conn  ssh.Conn
	chans <-chan ssh.NewChannel
	reqs  <-chan *ssh.Request
}

func (u *upstream) Close() error { return u.conn.Close() }

// clientVersion is what targets see in their logs for gateway logins.
const clientVersion = "SSH-2.0-tapline"

// dialTarget connects and authenticates to t with the gateway's own credentials.
func (s *Server) dialTarget(ctx context.Context, t *resolvedTarget, log *slog.Logger) (*upstream, error) {
	hostKeys, algos, err := t.hostKeyCheck(log)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{
		User:              t.SSH.User,
		Auth:              t.auth,
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: algos,
		ClientVersion:     clientVersion,
		Timeout:           s.cfg.DialTimeout,
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.Address)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	conn, chans, reqs, err := ssh.NewClientConn(nc, t.Address, cfg)
	stop()
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return &upstream{conn: conn, chans: chans, reqs: reqs}, nil
}

// hostKeyCheck returns the host key callback for t and the host key algorithms to
// negotiate. known_hosts is re-read per connection so that edits apply without a
// restart. The algorithms are those of the keys known_hosts holds for the address:
// otherwise the target may offer a key type the file lacks and the check fails
// although a valid key of another type is known.
func (t *resolvedTarget) hostKeyCheck(log *slog.Logger) (ssh.HostKeyCallback, []string, error) {
	if t.SSH.InsecureAcceptAnyHostKey {
		return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			log.Warn("accepting the target's host key WITHOUT verification (insecure_accept_any_host_key: true)",
				"target", t.Name, "address", hostname, "host_key", ssh.FingerprintSHA256(key))
			return nil
		}, nil, nil
	}
	cb, err := knownhosts.New(t.SSH.KnownHosts)
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts %s: %w", t.SSH.KnownHosts, err)
	}
	return cb, knownAlgorithms(cb, t.Address), nil
}

// knownAlgorithms asks the callback about a throwaway key: the KeyError it returns
// lists the keys known for the address.
func knownAlgorithms(cb ssh.HostKeyCallback, address string) []string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	if !errors.As(cb(address, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, probe), &keyErr) {
		return nil
	}
	var algos []string
	for _, k := range keyErr.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	default:
		return []string{keyType}
	}
}

// describeDialError turns an upstream failure into a sentence for the agent and
// the session.end reason.
func describeDialError(t *resolvedTarget, err error) string {
	var keyErr *knownhosts.KeyError
	switch {
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return fmt.Sprintf("target %q (%s) presented a host key that is not in the gateway's known_hosts", t.Name, t.Address)
	case errors.As(err, &keyErr):
		return fmt.Sprintf("target %q (%s) presented a host key that does NOT match the gateway's known_hosts (possible impersonation)", t.Name, t.Address)
	default:
		return fmt.Sprintf("cannot connect to target %q (%s): %v", t.Name, t.Address, err)
	}
}
