package gateway

import (
	"fmt"
	"net"

	"github.com/tapline/tapline/auth"
	sshproxy "github.com/tapline/tapline/ingest/ssh"
)

// addSSH adds the SSH listener when the ssh section is present.
func (g *Gateway) addSSH() error {
	l := g.cfg.SSH
	if l == nil {
		return nil
	}
	policy := map[string][]string{}
	var targets []sshproxy.Target
	for _, t := range g.cfg.Targets {
		// Every target is in the policy so that naming a Postgres target over SSH
		// says so instead of "unknown target".
		policy[t.Name] = t.Groups
		if t.Protocol == "ssh" {
			targets = append(targets, sshproxy.Target{Name: t.Name, Address: t.Address, SSH: *t.SSH})
		}
	}
	srv, err := sshproxy.New(sshproxy.Options{
		Config:     *l,
		DataDir:    g.cfg.DataDir,
		Targets:    targets,
		Verifier:   g.verifier,
		Policy:     auth.NewPolicy(policy),
		Recorder:   sshproxy.Recording(g.rec),
		Logger:     g.log,
		Registerer: g.reg,
		Limits:     g.limits,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", l.Listen)
	if err != nil {
		return fmt.Errorf("ssh.listen: %w", err)
	}
	g.servers = append(g.servers, server{name: "ssh", ln: ln, serve: srv.Serve})
	return nil
}

func (c *Config) validateSSHTarget(p *problems, key string, t *Target) {
	if c.SSH == nil {
		p.add(key+".protocol", "ssh target but no ssh listener is configured (add an ssh: section with listen)")
	}
	s := t.SSH
	if s == nil {
		p.add(key+".ssh", "required for protocol ssh (user, key_file or password_env, known_hosts)")
		return
	}
	key += ".ssh"
	if s.User == "" {
		p.add(key+".user", "required")
	}
	if s.KeyFile == "" && s.PasswordEnv == "" {
		p.add(key+".key_file", "key_file or password_env is required")
	}
	if s.KeyFile != "" {
		checkReadable(p, key+".key_file", s.KeyFile)
	}
	switch {
	case s.KnownHosts == "" && !s.InsecureAcceptAnyHostKey:
		p.add(key+".known_hosts", "required to verify the target's host key (insecure_accept_any_host_key: true skips the check, for throwaway targets only)")
	case s.KnownHosts != "" && s.InsecureAcceptAnyHostKey:
		p.add(key+".insecure_accept_any_host_key", "set either known_hosts or insecure_accept_any_host_key, not both")
	case s.KnownHosts != "":
		checkReadable(p, key+".known_hosts", s.KnownHosts)
	}
}

// validateSSHListener checks the ssh section.
func (c *Config) validateSSHListener(p *problems) {
	if c.SSH == nil {
		return
	}
	if c.SSH.Listen == "" {
		p.add("ssh.listen", "required when the ssh section is present")
	} else {
		checkHostPort(p, "ssh.listen", c.SSH.Listen)
	}
	if c.SSH.HostKey != "" {
		checkReadable(p, "ssh.host_key", c.SSH.HostKey)
	}
}
