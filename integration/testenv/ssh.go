package testenv

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHTarget is the test OpenSSH server and the account tests log in as.
type SSHTarget struct {
	Host           string
	Port           int
	User           string // local account "tapline-target"
	KeyPath        string // private ed25519 key authorized for User (the gateway's key)
	KnownHostsPath string // known_hosts file with the host key at [Host]:Port
	HostPubKey     string // the host key, authorized_keys format ("ssh-ed25519 AAAA...")
	Log            string // sshd log (LogLevel VERBOSE)
	SudoPassword   string // User's password: `sudo /usr/bin/id` asks for it, every time
}

// Addr is host:port.
func (s SSHTarget) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// KnownHostsLine is the known_hosts line for the server's host key
// ("[127.0.0.1]:PORT ssh-ed25519 AAAA...").
func (s SSHTarget) KnownHostsLine(t testing.TB) string {
	t.Helper()
	return knownhosts.Line([]string{s.Addr()}, s.HostKey(t))
}

// HostKey is the server's host public key.
func (s SSHTarget) HostKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.HostPubKey))
	if err != nil {
		t.Fatalf("testenv: TAPLINE_SSH_HOST_PUBKEY: %v", err)
	}
	return k
}

// Signer is the private key authorized for User.
func (s SSHTarget) Signer(t testing.TB) ssh.Signer {
	t.Helper()
	pem, err := os.ReadFile(s.KeyPath)
	if err != nil {
		t.Fatalf("testenv: ssh key: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatalf("testenv: ssh key %s: %v", s.KeyPath, err)
	}
	return signer
}

// ClientConfig logs in as User with the key and checks the host key against
// KnownHostsPath.
func (s SSHTarget) ClientConfig(t testing.TB) *ssh.ClientConfig {
	t.Helper()
	cb, err := knownhosts.New(s.KnownHostsPath)
	if err != nil {
		t.Fatalf("testenv: known_hosts: %v", err)
	}
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer(t))},
		HostKeyCallback: cb,
		Timeout:         10 * time.Second,
	}
}

// SSH returns the test OpenSSH server.
func SSH(t testing.TB) SSHTarget {
	t.Helper()
	v := need(t, "ssh", "TAPLINE_SSH_HOST", "TAPLINE_SSH_PORT", "TAPLINE_SSH_USER",
		"TAPLINE_SSH_KEY", "TAPLINE_SSH_KNOWN_HOSTS", "TAPLINE_SSH_HOST_PUBKEY")
	port, err := strconv.Atoi(v[1])
	if err != nil {
		t.Fatalf("testenv: TAPLINE_SSH_PORT=%q: %v", v[1], err)
	}
	s := SSHTarget{Host: v[0], Port: port, User: v[2], KeyPath: v[3], KnownHostsPath: v[4], HostPubKey: v[5]}
	s.Log, _ = Lookup("TAPLINE_SSH_LOG")
	s.SudoPassword, _ = Lookup("TAPLINE_SSH_SUDO_PASSWORD")
	reachable(t, "ssh", s.Addr(), "TAPLINE_SSH_LOG")
	return s
}
