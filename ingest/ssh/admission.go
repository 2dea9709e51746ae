package sshproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/schemas"
)

// tokenPrompt is the keyboard-interactive question; the answer is the token. It
// says "password" because sshpass and expect scripts answer only prompts that do.
const tokenPrompt = "OIDC token (password): "

// openSSHPasswordLimit: OpenSSH reads passwords and keyboard-interactive answers
// into a 1024-byte buffer, so longer tokens arrive cut to 1023 bytes.
const openSSHPasswordLimit = 1023

// admission decides one connection during SSH authentication: verify the token,
// check the policy, start the recording and log in to the target. Everything that
// can refuse the agent happens here, so the refusal is an authentication failure
// with a banner that says why.
type admission struct {
	srv *Server
	ctx context.Context
	log *slog.Logger

	// result is set when admission refused the agent (a metrics label).
	result string
	// authenticated frees the pending-handshake slot once the token was checked.
	authenticated func()
	// release frees the session slot; nil until one was taken.
	release func()
	// deadline ends the session (token expiry or max length); zero: none.
	deadline       time.Time
	deadlineReason string

	// Set once admitted.
	target *resolvedTarget
	rec    Session
	up     *upstream
}

func (a *admission) endSession() {
	if a.release != nil {
		a.release()
	}
}

func (a *admission) serverConfig(clientVersion string) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		// One real attempt: a token that failed does not start passing on retry, and
		// every attempt is a recorded denial.
		MaxAuthTries:  1,
		ServerVersion: "SSH-2.0-tapline",
		PasswordCallback: func(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			return a.admit(meta, "password", string(password))
		},
		KeyboardInteractiveCallback: func(meta ssh.ConnMetadata, challenge ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			// No name or instruction: OpenSSH prints them on stderr, which would
			// pollute every command's output.
			answers, err := challenge("", "", []string{tokenPrompt}, []bool{false})
			if err != nil {
				return nil, err
			}
			if len(answers) != 1 {
				return nil, fmt.Errorf("expected 1 answer, got %d", len(answers))
			}
			return a.admit(meta, "keyboard-interactive", answers[0])
		},
	}
	cfg.Ciphers = a.srv.cfg.Ciphers
	if len(cfg.Ciphers) == 0 {
		cfg.Ciphers = defaultAgentCiphers(clientVersion)
	}
	cfg.AddHostKey(a.srv.hostKey)
	return cfg
}

// defaultAgentCiphers is the offer when ssh.ciphers is empty. The client's
// order decides (RFC 4253 7.1), and OpenSSH lists ChaCha20-Poly1305 first and
// AES-CTR before AES-GCM:
//   - the SSH library's ChaCha20 is plain Go on amd64, several times slower
//     than AES-GCM in hardware, so it is left out where the CPU has AES
//     instructions;
//   - AES-CTR needs a separate MAC, and HMAC-SHA-256 over every byte was a
//     tenth of the gateway's CPU on an scp (docs/performance.md). A client
//     known to speak AES-GCM (OpenSSH since 6.2, by its identification line)
//     is offered AES-GCM only and settles on it; any other client is offered
//     AES-CTR too, since some (Paramiko before 3.5) speak nothing else.
//
// nil means the library's defaults.
func defaultAgentCiphers(clientVersion string) []string {
	if !(cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) && !(cpu.ARM64.HasAES && cpu.ARM64.HasPMULL) {
		return nil
	}
	if offersAESGCM(clientVersion) {
		return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}
}

func (a *admission) admit(meta ssh.ConnMetadata, method, token string) (*ssh.Permissions, error) {
	s := a.srv
	login, name := splitUser(meta.User(), s.cfg.UserSeparator)
	start := schemas.SessionStart{
		Target:     name,
		ClientAddr: meta.RemoteAddr().String(),
		Params: map[string]string{
			"user": meta.User(), "login": login, "auth_method": method,
			"client_version": string(meta.ClientVersion()),
		},
	}
	a.log = a.log.With("user", meta.User(), "target", name)
	id, err := s.verifier.Verify(a.ctx, token)
	a.authenticated() // the token is checked: no longer an unauthenticated handshake
	if err != nil {
		return a.deny(start, tokenDenial(err, token))
	}
	setIdentity(&start, id)
	a.log = a.log.With("subject", id.Subject)
	t, reason := a.authorize(name, login, id)
	if reason != "" {
		return a.deny(start, reason)
	}
	start.TargetAddr = t.Address
	if a.release == nil { // MaxAuthTries is 1, but never take two slots
		if a.release, err = s.limits.Session(id.Issuer+"\x00"+id.Subject, id.Subject); err != nil {
			return a.deny(start, err.Error())
		}
	}
	a.deadline, a.deadlineReason = s.limits.Deadline(id.Expiry, time.Now())
	return a.open(t, start)
}

// authorize applies the policy and the target's own constraints.
func (a *admission) authorize(name, login string, id auth.Identity) (*resolvedTarget, string) {
	if name == "" {
		return nil, fmt.Sprintf("no target in the user name; connect as TARGET@gateway or LOGIN%sTARGET@gateway", a.srv.cfg.UserSeparator)
	}
	if err := a.srv.policy.Allow(name, id); err != nil {
		return nil, err.Error()
	}
	t, ok := a.srv.targets[name]
	if !ok {
		return nil, fmt.Sprintf("target %q is not an SSH target", name)
	}
	if login != "" && login != t.SSH.User {
		return nil, fmt.Sprintf("target %q is reached as login %q only, not %q", name, t.SSH.User, login)
	}
	return t, ""
}

// open starts the recording, then logs in to the target: nothing reaches a target
// before its session.start is in Kafka.
func (a *admission) open(t *resolvedTarget, start schemas.SessionStart) (*ssh.Permissions, error) {
	rec, err := a.srv.rec.Start(a.ctx, start)
	if err != nil {
		a.result = resultRefused
		a.log.Error("refusing SSH session: recording unavailable", "err", err)
		return nil, refusal("tapline: recording is unavailable, so new sessions are refused (%v). Try again later.", err)
	}
	log := a.log.With("session_id", rec.ID())
	up, err := a.srv.dialTarget(a.ctx, t, log)
	if err != nil {
		a.result = resultTargetError
		reason := describeDialError(t, err)
		log.Warn("refusing SSH session: target login failed", "err", err, "known_hosts", t.SSH.KnownHosts)
		if endErr := rec.End(a.ctx, reason); endErr != nil {
			log.Error("recording session end", "err", endErr)
		}
		return nil, refusal("tapline: %s", reason)
	}
	a.target, a.rec, a.up, a.log = t, rec, up, log
	log.Info("SSH session started", "target_addr", t.Address)
	return &ssh.Permissions{}, nil
}

// deny fails authentication with the reason as banner and records the refusal
// in the background: the agent is not kept waiting for Kafka.
func (a *admission) deny(start schemas.SessionStart, reason string) (*ssh.Permissions, error) {
	a.result = resultDenied
	a.log.Info("SSH access denied", "reason", reason)
	log, ctx := a.log, context.WithoutCancel(a.ctx)
	a.srv.denials.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := a.srv.rec.Deny(ctx, start, reason); err != nil {
			log.Error("recording SSH denial", "reason", reason, "err", err)
		}
	})
	return nil, refusal("tapline: access denied: %s", reason)
}

// abandon cleans up after a handshake that did not complete.
func (a *admission) abandon(err error) {
	result := a.result
	if result == "" {
		result = resultAbandoned
	}
	a.srv.m.connections.WithLabelValues(result).Inc()
	if a.rec == nil {
		var neg *ssh.AlgorithmNegotiationError
		if errors.As(err, &neg) {
			// The agent gets OpenSSH's "no matching cipher found"; the operator
			// needs to know which setting widens the offer.
			a.log.Warn("agent offers no algorithm the gateway accepts; for ciphers, see ssh.ciphers",
				"what", neg.What, "agent_offered", neg.RequestedAlgorithms, "gateway_offers", neg.SupportedAlgorithms)
			return
		}
		a.log.Debug("SSH handshake ended before admission", "err", err)
		return
	}
	a.up.Close()
	a.log.Info("agent left during authentication", "err", err)
	if endErr := a.rec.End(context.WithoutCancel(a.ctx), "agent disconnected during authentication"); endErr != nil {
		a.log.Error("recording session end", "err", endErr)
	}
}

// refusal fails authentication; the message reaches the agent as a banner
// (OpenSSH prints it on stderr) before the gateway disconnects.
func refusal(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &ssh.BannerError{Err: errors.New(msg), Message: msg + "\r\n"}
}

func tokenDenial(err error, token string) string {
	msg := err.Error()
	if len(token) == openSSHPasswordLimit && errors.Is(err, auth.ErrInvalidToken) {
		msg += fmt.Sprintf(" (the token is exactly %d bytes: OpenSSH cuts longer passwords there)", openSSHPasswordLimit)
	}
	return msg
}

func setIdentity(s *schemas.SessionStart, id auth.Identity) {
	s.Issuer, s.Subject, s.Email, s.Name = id.Issuer, id.Subject, id.Email, id.Name
	s.Groups, s.TokenID, s.TokenExpiry = id.Groups, id.TokenID, id.Expiry
}
