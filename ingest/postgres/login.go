package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	pgwire "github.com/tapline/tapline/schemas/postgres"
	"time"

	"github.com/jackc/pgproto3/v2"

	"github.com/tapline/tapline/auth"
	"github.com/tapline/tapline/schemas"
)

// maxPasswordMessage bounds the PasswordMessage: a token plus header (auth rejects
// tokens over 64 KiB anyway).
const maxPasswordMessage = 80 << 10

// login authenticates the agent and opens the recorded session and the target
// connection. On failure it has answered the agent and returns a nil Session.
func (c *conn) login(ctx context.Context, st *startup) (Session, *upstream, *Target) {
	s := c.s
	user := st.params["user"]
	if user == "" {
		c.reject("protocol_error", codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet")
		return nil, nil, nil
	}
	if r := st.params["replication"]; r != "" && r != "false" && r != "off" && r != "no" && r != "0" {
		c.reject("protocol_error", codeFeatureNotSupported, "tapline: replication connections are not supported")
		return nil, nil, nil
	}
	if !c.tls && !c.plaintext {
		c.reject("tls_required", codeInvalidAuthSpec,
			"tapline: TLS required: connect with sslmode=verify-full and PGSSLROOTCERT set to the gateway's CA (`tapline ca` prints it); the password is an identity token, and sslmode=require would hand it to anyone in the path")
		return nil, nil, nil
	}
	name := st.params["database"]
	if name == "" {
		name = user // libpq's default database is the user name
	}
	start := schemas.SessionStart{Target: name, ClientAddr: c.remote, Params: st.params}
	token, ok := c.askPassword(st)
	if !ok {
		return nil, nil, nil
	}
	id, err := s.cfg.Verifier.Verify(ctx, token)
	c.authenticated() // the token is checked: no longer an unauthenticated handshake
	if err != nil {
		c.denyToken(ctx, start, err)
		return nil, nil, nil
	}
	start.Issuer, start.Subject, start.Email, start.Name = id.Issuer, id.Subject, id.Email, id.Name
	start.Groups, start.TokenID, start.TokenExpiry = id.Groups, id.TokenID, id.Expiry
	if err := s.policy.Allow(name, id); err != nil {
		reason := "forbidden"
		if errors.Is(err, auth.ErrUnknownTarget) {
			reason = "unknown_target"
		}
		c.deny(ctx, start, reason, codeInvalidAuthSpec, "tapline: "+err.Error())
		return nil, nil, nil
	}
	t := s.targets[name]
	start.TargetAddr = t.Address
	if c.endSession, err = s.limits.Session(id.Issuer+"\x00"+id.Subject, id.Subject); err != nil {
		c.deny(ctx, start, "too_many_connections", codeTooManyConnections, "tapline: "+err.Error())
		return nil, nil, nil
	}
	c.deadline, c.deadlineReason = s.limits.Deadline(id.Expiry, time.Now())
	return c.open(ctx, st, start, t)
}

// askPassword requests the token as a cleartext password and reads it.
func (c *conn) askPassword(st *startup) (string, bool) {
	if st.minor > 0 || len(st.pqOpts) > 0 {
		if _, err := c.net.Write(negotiateProtocolVersion(st.pqOpts)); err != nil {
			return "", false
		}
	}
	if _, err := c.net.Write(encode(&pgproto3.AuthenticationCleartextPassword{})); err != nil {
		return "", false
	}
	r := newMsgReader(c.in, maxPasswordMessage, map[byte]bool{'p': true})
	_, msg, err := r.next()
	var pe *ProtocolError
	switch {
	case errors.As(err, &pe):
		c.reject("protocol_error", codeProtocolViolation, "tapline: expected a password message: "+err.Error())
		return "", false
	case err != nil:
		// psql without a password disconnects here and prompts; not a denial.
		c.s.metrics.connections.WithLabelValues("abandoned").Inc()
		c.s.log.Debug("client left at the password request", "client", c.remote, "err", err)
		return "", false
	}
	body := msg[headerLen:]
	if len(body) == 0 || bytes.IndexByte(body, 0) != len(body)-1 {
		c.reject("protocol_error", codeProtocolViolation, "tapline: malformed password message")
		return "", false
	}
	return string(body[:len(body)-1]), true
}

func (c *conn) reject(result, code, msg string) {
	c.s.metrics.connections.WithLabelValues(result).Inc()
	c.s.log.Info("connection rejected", "client", c.remote, "result", result, "reason", msg)
	c.fatal(code, msg)
}

// denyToken maps a token verification failure to the agent's error.
func (c *conn) denyToken(ctx context.Context, start schemas.SessionStart, err error) {
	switch {
	case errors.Is(err, auth.ErrExpired):
		c.deny(ctx, start, "expired", codeInvalidPassword, "tapline: "+err.Error()+"; get a fresh token")
	case errors.Is(err, auth.ErrIssuerUnavailable):
		c.deny(ctx, start, "issuer_unavailable", codeRejected, "tapline: identity provider unavailable, try again later")
		c.s.log.Warn("token not verified: identity provider unavailable", "client", c.remote, "err", err)
	default:
		c.deny(ctx, start, "invalid_token", codeInvalidPassword, "tapline: "+err.Error())
	}
}

// deny answers the agent and records session.denied in the background: the
// refusal does not wait for Kafka (which would let unauthenticated clients hold
// connections open for a round trip each), and goes out even when the denial
// cannot be recorded: refusing is always safe.
func (c *conn) deny(ctx context.Context, start schemas.SessionStart, reason, code, msg string) {
	s := c.s
	s.metrics.connections.WithLabelValues("denied").Inc()
	s.metrics.denials.WithLabelValues(reason).Inc()
	s.log.Info("login denied", "client", c.remote, "target", start.Target, "subject", start.Subject, "reason", msg)
	c.fatal(code, msg)
	remote := c.remote
	s.denials.Go(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
		defer cancel()
		if err := s.cfg.Recorder.Deny(ctx, start, msg); err != nil {
			s.log.Error("denial not recorded", "client", remote, "target", start.Target, "err", err)
		}
	})
}

// open starts the recorded session, records the agent's StartupMessage and logs in
// to the target.
func (c *conn) open(ctx context.Context, st *startup, start schemas.SessionStart, t *Target) (Session, *upstream, *Target) {
	s := c.s
	sess, err := s.cfg.Recorder.Start(ctx, start)
	if err != nil {
		s.log.Error("session refused: recording unavailable", "client", c.remote, "target", t.Name, "err", err)
		c.reject("refused", codeRejected, msgRecordingUnavailable)
		return nil, nil, nil
	}
	log := s.log.With("session", sess.ID(), "target", t.Name, "subject", start.Subject)
	if err := sess.Client(ctx, pgwire.StartupMessage, 0, st.raw); err != nil {
		log.Error("session refused: recording failed", "err", err)
		c.reject("refused", codeRejected, msgRecordingUnavailable)
		c.end(sess, "recording failed: "+err.Error())
		return nil, nil, nil
	}
	up, err := s.connectTarget(ctx, t, st.params)
	if err != nil {
		var te *targetError
		if !errors.As(err, &te) {
			te = &targetError{code: codeCannotConnect, msg: fmt.Sprintf("tapline: target %q: %v", t.Name, err)}
		}
		log.Warn("target login failed", "err", err)
		msg := fatalMessage(te.code, te.msg)
		_ = sess.Server(pgwire.ErrorResponse, 0, msg)
		c.s.metrics.connections.WithLabelValues("target_error").Inc()
		_, _ = c.net.Write(msg)
		c.end(sess, "target login failed: "+te.msg)
		return nil, nil, nil
	}
	return sess, up, t
}

// end writes session.end; the session's own context may be gone by now.
func (c *conn) end(sess Session, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	if err := sess.End(ctx, reason); err != nil {
		c.s.log.Error("session end not recorded", "session", sess.ID(), "reason", reason, "err", err)
	}
}
