package postgres

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgproto3/v2"

	pgwire "github.com/tapline/tapline/schemas/postgres"
)

// TLSMode is how the gateway secures its connection to a target, as libpq's sslmode.
type TLSMode string

const (
	TLSDisable    TLSMode = "disable"     // plain TCP
	TLSRequire    TLSMode = "require"     // encrypted, certificate not checked
	TLSVerifyFull TLSMode = "verify-full" // encrypted, certificate and host name checked
)

// Target is a Postgres server agents reach through the gateway under Name (the
// database name they connect to). The gateway logs in with its own credentials.
type Target struct {
	Name     string
	Address  string   // host:port
	Groups   []string // groups allowed to use it (auth.AnyGroup admits every verified identity)
	Database string
	User     string
	// Password returns the gateway's password for User. It is called for every
	// connection, so a rotated secret file takes effect without a restart.
	Password func() (string, error)
	TLS      TLSMode
	RootCAs  *x509.CertPool // verify-full: trusted CAs; nil means the system roots
	// AllowMD5 and AllowCleartext answer a target that asks for md5 or a
	// cleartext password. Off by default: whoever poses as the target would get
	// the password, or a hash that logs in as well as the password.
	AllowMD5       bool
	AllowCleartext bool
}

// upstream is an authenticated connection to a target.
type upstream struct {
	conn net.Conn
	w    *bufio.Writer
	msgs *msgReader
	auth string // how the gateway authenticated: SCRAM-SHA-256-PLUS, SCRAM-SHA-256, md5, password, trust
}

// targetError is a failure to reach or log in to a target, with what to tell the agent.
type targetError struct {
	code string
	msg  string
}

func (e *targetError) Error() string { return e.msg }

// connectTarget dials t, negotiates TLS per t.TLS, sends a StartupMessage with the
// agent's parameters (except user and database, which come from t) and completes
// authentication with the gateway's credentials. It returns once the target sent
// AuthenticationOk; what follows (ParameterStatus, BackendKeyData, ReadyForQuery)
// is for the relay.
func (s *Server) connectTarget(ctx context.Context, t *Target, agentParams map[string]string) (*upstream, error) {
	conn, err := s.dialTarget(ctx, t)
	if err != nil {
		return nil, &targetError{code: codeCannotConnect, msg: fmt.Sprintf("tapline: cannot reach target %q: %v", t.Name, err)}
	}
	_ = conn.SetDeadline(time.Now().Add(s.cfg.StartupTimeout))
	up := &upstream{
		conn: conn,
		w:    bufio.NewWriterSize(conn, 32<<10),
		msgs: newMsgReader(bufio.NewReaderSize(conn, 32<<10), s.cfg.MaxMessageBytes, serverTypes),
	}
	if err := up.login(t, agentParams); err != nil {
		conn.Close()
		var te *targetError
		if errors.As(err, &te) {
			return nil, te
		}
		return nil, &targetError{code: codeCannotConnect, msg: fmt.Sprintf("tapline: login to target %q failed: %v", t.Name, err)}
	}
	_ = conn.SetDeadline(time.Time{})
	return up, nil
}

func (s *Server) dialTarget(ctx context.Context, t *Target) (net.Conn, error) {
	d := net.Dialer{Timeout: s.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", t.Address)
	if err != nil || t.TLS == TLSDisable || t.TLS == "" {
		return conn, err
	}
	tc, err := startTargetTLS(ctx, conn, t)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

func startTargetTLS(ctx context.Context, conn net.Conn, t *Target) (net.Conn, error) {
	req := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, codeSSLRequest)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return nil, fmt.Errorf("TLS negotiation: %w", err)
	}
	if answer[0] != 'S' {
		return nil, fmt.Errorf("target does not accept TLS (answered %q) but tls is %s", printable(answer[0]), t.TLS)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.TLS == TLSVerifyFull {
		host, _, _ := net.SplitHostPort(t.Address)
		cfg.ServerName, cfg.RootCAs = host, t.RootCAs
	} else {
		cfg.InsecureSkipVerify = true // require: encryption without authentication, like libpq
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return tc, nil
}

// forwardedParams are the agent's startup parameters passed on to the target.
// user and database name the gateway's login; _pq_ options were refused already.
func forwardedParams(agent map[string]string, t *Target) map[string]string {
	p := make(map[string]string, len(agent)+2)
	for k, v := range agent {
		if k != "user" && k != "database" {
			p[k] = v
		}
	}
	p["user"], p["database"] = t.User, t.Database
	return p
}

func (u *upstream) send(m interface{ Encode([]byte) ([]byte, error) }) error {
	b, err := m.Encode(nil)
	if err != nil {
		return err
	}
	if _, err := u.w.Write(b); err != nil {
		return err
	}
	return u.w.Flush()
}

// login runs the startup and authentication exchange with the target.
func (u *upstream) login(t *Target, agentParams map[string]string) error {
	if err := u.send(&pgproto3.StartupMessage{ProtocolVersion: protocol30, Parameters: forwardedParams(agentParams, t)}); err != nil {
		return err
	}
	var scram *scramClient
	scramDone := false
	for {
		typ, msg, err := u.msgs.next()
		if err != nil {
			return err
		}
		body := msg[headerLen:]
		switch typ {
		case 'E':
			return refusal(t, body)
		case 'N', 'v': // a notice, or a protocol downgrade we already comply with
			continue
		case 'R':
		default:
			return fmt.Errorf("unexpected %s during authentication", pgwire.ServerKinds[typ])
		}
		if len(body) < 4 {
			return errors.New("short authentication message")
		}
		switch authType := binary.BigEndian.Uint32(body); authType {
		case pgproto3.AuthTypeOk:
			if scram != nil && !scramDone {
				return errors.New("target skipped the SCRAM server signature")
			}
			if u.auth == "" {
				u.auth = "trust"
			}
			return nil
		case pgproto3.AuthTypeCleartextPassword:
			if !t.AllowCleartext {
				return weakAuth(t, "a cleartext password", "allow_cleartext")
			}
			u.auth = "password"
			err = u.sendPassword(t, func(pw string) string { return pw })
		case pgproto3.AuthTypeMD5Password:
			if !t.AllowMD5 {
				return weakAuth(t, "md5 password authentication", "allow_md5")
			}
			var m pgproto3.AuthenticationMD5Password
			if err := pgwire.Decode(&m, body); err != nil {
				return err
			}
			u.auth = "md5"
			err = u.sendPassword(t, func(pw string) string { return md5Password(t.User, pw, m.Salt) })
		case pgproto3.AuthTypeSASL:
			pw, perr := password(t)
			if perr != nil {
				return perr
			}
			var mech string
			if scram, mech, err = newSCRAMClient(pw, saslMechanisms(body[4:]), u.tlsState()); err != nil {
				return err
			}
			u.auth = mech
			err = u.send(&pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: scram.clientFirst()})
		case pgproto3.AuthTypeSASLContinue:
			if scram == nil {
				return errors.New("SASL continue without SASL start")
			}
			var final []byte
			if final, err = scram.clientFinal(body[4:]); err == nil {
				err = u.send(&pgproto3.SASLResponse{Data: final})
			}
		case pgproto3.AuthTypeSASLFinal:
			if scram == nil {
				return errors.New("SASL final without SASL start")
			}
			err = scram.verifyServerFinal(body[4:])
			scramDone = err == nil
		default:
			return fmt.Errorf("target requests %s, which the gateway does not support (configure it for scram-sha-256)", pgwire.AuthKinds[authType])
		}
		if err != nil {
			return err
		}
	}
}

// tlsState is the target connection's TLS state, or nil without TLS.
func (u *upstream) tlsState() *tls.ConnectionState {
	tc, ok := u.conn.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	return &st
}

func weakAuth(t *Target, what, key string) error {
	return &targetError{code: codeRejected, msg: fmt.Sprintf(
		"tapline: target %q asked for %s, which the gateway refuses (whoever poses as the target would learn a usable credential): "+
			"configure the target for scram-sha-256, or set %s: true in its postgres section", t.Name, what, key)}
}

func (u *upstream) sendPassword(t *Target, transform func(string) string) error {
	pw, err := password(t)
	if err != nil {
		return err
	}
	return u.send(&pgproto3.PasswordMessage{Password: transform(pw)})
}

func password(t *Target) (string, error) {
	if t.Password == nil {
		return "", &targetError{code: codeRejected, msg: fmt.Sprintf("tapline: no credentials configured for target %q", t.Name)}
	}
	pw, err := t.Password()
	if err != nil {
		return "", &targetError{code: codeRejected, msg: fmt.Sprintf("tapline: credentials for target %q unavailable: %v", t.Name, err)}
	}
	return pw, nil
}

// refusal turns the target's ErrorResponse during login into the agent's error.
// Authentication failures (class 28) become 08004: the agent's token was fine, the
// gateway's own credentials were not, and the agent must not retry with a new token.
func refusal(t *Target, body []byte) error {
	var e pgproto3.ErrorResponse
	if err := pgwire.Decode(&e, body); err != nil {
		return fmt.Errorf("undecodable ErrorResponse: %w", err)
	}
	code := e.Code
	if len(code) != 5 || code[:2] == "28" {
		code = codeRejected
	}
	return &targetError{code: code, msg: fmt.Sprintf("tapline: target %q refused the gateway's login: %s (SQLSTATE %s)", t.Name, e.Message, e.Code)}
}
