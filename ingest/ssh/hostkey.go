package sshproxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// loadHostKey reads the configured host key, or the one in dataDir, generating the
// latter on first start so that agents' known_hosts entries stay valid across
// restarts. A configured path that does not exist is an error: silently minting a
// new key there would make every agent see a changed host key.
func loadHostKey(configured, dataDir string) (ssh.Signer, error) {
	if configured != "" {
		return readHostKey(configured)
	}
	if dataDir == "" {
		return nil, errors.New("ssh: host_key or data_dir is required")
	}
	path := filepath.Join(dataDir, hostKeyFileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := generateHostKey(path); err != nil {
			return nil, err
		}
	}
	return readHostKey(path)
}

func readHostKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssh: host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("ssh: host key %s: %w", path, err)
	}
	return signer, nil
}

func generateHostKey(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("ssh: host key: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("ssh: generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(key, "tapline gateway")
	if err != nil {
		return fmt.Errorf("ssh: encode host key: %w", err)
	}
	// Write a temporary file and hard-link it into place: the key appears complete
	// or not at all, and a gateway starting at the same moment on the same data_dir
	// keeps whichever key was linked first.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".host-key-*")
	if err != nil {
		return fmt.Errorf("ssh: host key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(pem.EncodeToMemory(block)); err != nil {
		tmp.Close()
		return fmt.Errorf("ssh: write host key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ssh: write host key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("ssh: host key: %w", err)
	}
	return nil
}
