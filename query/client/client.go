// Package client is a Go client of the query API, used by the CLI's sessions,
// replay and verify commands.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/query/wire"
)

// Environment variables and the default API address.
const (
	EnvAPI     = "TAPLINE_API"
	EnvToken   = "TAPLINE_TOKEN"
	DefaultAPI = "http://127.0.0.1:8080"
)

// Client talks to one query API with one token.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client for the API at base (scheme://host[:port]) using token.
// Empty values fall back to $TAPLINE_API / $TAPLINE_TOKEN, then to DefaultAPI.
func New(base, token string) (*Client, error) {
	if base == "" {
		base = os.Getenv(EnvAPI)
	}
	if base == "" {
		base = DefaultAPI
	}
	if token == "" {
		token = os.Getenv(EnvToken)
	}
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API address %q: want http(s)://host:port", base)
	}
	if token == "" {
		return nil, fmt.Errorf("no token: pass --token or set %s (e.g. export %s=$(tapline token --sub you))", EnvToken, EnvToken)
	}
	// No overall timeout: replays stream for as long as a session is followed.
	return &Client{base: u, token: token, http: &http.Client{}}, nil
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("API answered %d", e.Status)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// ErrNotFound matches (errors.Is) an API 404.
var ErrNotFound = errors.New("not found")

func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// get sends a GET and returns the body of a 200 answer; the caller closes it.
func (c *Client) get(ctx context.Context, path string, q url.Values) (io.ReadCloser, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query API at %s: %w", c.base, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	var body wire.ErrorBody
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	return nil, &Error{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	body, err := c.get(ctx, path, q)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return fmt.Errorf("query API: unreadable answer to %s: %w", path, err)
	}
	return nil
}

// SessionQuery filters a session search; zero fields do not filter.
type SessionQuery struct {
	Subject, Issuer, Target, Protocol, Status, Command string
	Since, Until                                       time.Time
	Limit                                              int
	Cursor                                             string
}

func (q *SessionQuery) values() url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("subject", q.Subject)
	set("issuer", q.Issuer)
	set("target", q.Target)
	set("protocol", q.Protocol)
	set("status", q.Status)
	set("command", q.Command)
	set("cursor", q.Cursor)
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Sessions returns one page of a session search.
func (c *Client) Sessions(ctx context.Context, q SessionQuery) (wire.SessionList, error) {
	var out wire.SessionList
	err := c.getJSON(ctx, "/api/v1/sessions", q.values(), &out)
	return out, err
}

// Session returns one session's summary.
func (c *Client) Session(ctx context.Context, id string) (wire.Session, error) {
	var out wire.Session
	err := c.getJSON(ctx, "/api/v1/sessions/"+url.PathEscape(id), nil, &out)
	return out, err
}

// ReplayOptions select a replay's format and behaviour.
type ReplayOptions struct {
	Format  string // text, json, asciicast (SSH) or har (HTTP)
	Follow  bool
	MaxRows int
	Channel *int64
}

// Replay opens a session's replay stream; the caller closes it.
func (c *Client) Replay(ctx context.Context, id string, o ReplayOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if o.Format != "" {
		q.Set("format", o.Format)
	}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.MaxRows > 0 {
		q.Set("max_rows", strconv.Itoa(o.MaxRows))
	}
	if o.Channel != nil {
		q.Set("channel", strconv.FormatInt(*o.Channel, 10))
	}
	return c.get(ctx, "/api/v1/sessions/"+url.PathEscape(id)+"/replay", q)
}

// Verify returns a session's verification report.
func (c *Client) Verify(ctx context.Context, id string) (verify.Report, error) {
	var out verify.Report
	err := c.getJSON(ctx, "/api/v1/sessions/"+url.PathEscape(id)+"/verify", nil, &out)
	return out, err
}
