package sshproxy_test

import (
	"testing"

	"github.com/tapline/tapline/integration/testenv"
)

// sshService is the test sshd as the gateway's targets use it.
type sshService struct {
	Addr, User, Key, KnownHosts string
}

func sshTarget(t *testing.T) sshService {
	s := testenv.SSH(t)
	return sshService{Addr: s.Addr(), User: s.User, Key: s.KeyPath, KnownHosts: s.KnownHostsPath}
}

func kafkaBrokers(t *testing.T) []string { return testenv.Kafka(t) }
