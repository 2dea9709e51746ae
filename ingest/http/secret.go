package httpproxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Secret is a credential from exactly one of: a literal value, an environment
// variable (read at start), or a file (re-read when it changes, so a rotated,
// mounted secret applies without a restart).
type Secret struct {
	Value string `yaml:"value"`
	Env   string `yaml:"env"`
	File  string `yaml:"file"`
}

func (s *Secret) validate(key string, lookupEnv func(string) (string, bool)) []string {
	n := 0
	for _, v := range []string{s.Value, s.Env, s.File} {
		if v != "" {
			n++
		}
	}
	switch {
	case n != 1:
		return []string{key + ": set exactly one of value, env and file"}
	case s.Env != "":
		if v, ok := lookupEnv(s.Env); !ok || v == "" {
			return []string{key + ".env: " + s.Env + " not set"}
		}
	case s.File != "":
		if _, err := os.Stat(s.File); err != nil {
			return []string{key + ".file: " + err.Error()}
		}
	}
	return nil
}

// recheck is how often a file secret's modification time is looked at.
const recheck = time.Second

// secretSource yields a secret's current value.
type secretSource struct {
	fixed string
	file  *watchedFile
}

func newSecretSource(s *Secret, lookupEnv func(string) (string, bool)) *secretSource {
	switch {
	case s.File != "":
		return &secretSource{file: &watchedFile{paths: []string{s.File}}}
	case s.Env != "":
		v, _ := lookupEnv(s.Env)
		return &secretSource{fixed: v}
	}
	return &secretSource{fixed: s.Value}
}

func (s *secretSource) get() (string, error) {
	if s.file == nil {
		return s.fixed, nil
	}
	b, err := s.file.read()
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b[0]), "\r\n"), nil
}

// watchedFile caches files' contents, re-reading them when one's size or
// modification time changed (looked at most once per recheck).
type watchedFile struct {
	paths []string

	mu      sync.Mutex
	checked time.Time
	stamp   string
	data    [][]byte
	parsed  any
}

func (w *watchedFile) read() ([][]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.readLocked()
}

func (w *watchedFile) readLocked() ([][]byte, error) {
	now := time.Now()
	if w.data != nil && now.Sub(w.checked) < recheck {
		return w.data, nil
	}
	var stamp strings.Builder
	for _, p := range w.paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&stamp, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	w.checked = now
	if w.data != nil && stamp.String() == w.stamp {
		return w.data, nil
	}
	data := make([][]byte, len(w.paths))
	for i, p := range w.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		data[i] = b
	}
	w.data, w.stamp, w.parsed = data, stamp.String(), nil
	return data, nil
}

// clientCertificate loads a key pair, reloading it when the files change.
func (w *watchedFile) clientCertificate() (*tls.Certificate, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := w.readLocked()
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	if c, ok := w.parsed.(*tls.Certificate); ok {
		return c, nil
	}
	if len(data) != 2 {
		return nil, errors.New("client certificate: want a certificate and a key file")
	}
	c, err := tls.X509KeyPair(data[0], data[1])
	if err != nil {
		return nil, fmt.Errorf("client certificate %s: %w", w.paths[0], err)
	}
	w.parsed = &c
	return &c, nil
}
