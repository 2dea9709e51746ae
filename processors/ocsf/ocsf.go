// Package ocsf maps tapline's audit records (processors/audit) to OCSF events, so a
// SIEM that speaks OCSF (Security Lake, Splunk, Sentinel, Chronicle, Elastic) reads
// tapline without a custom parser. Session lifecycle events become Authentication
// (3002), commands the class of their protocol (Datastore Activity for Postgres, SSH
// Activity, HTTP Activity, API Activity for Kubernetes), integrity alerts Detection
// Finding (2004). docs/audit-format.md has the mapping table; change both together.
package ocsf

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	_ "github.com/tapline/tapline/schemas/protocol/all" // the protocols whose commands are mapped

	"github.com/tapline/tapline/processors/audit"
)

// Version is the OCSF schema version the events follow (metadata.version).
const Version = "1.7.0"

// Product names tapline in metadata.product.
var Product = ProductInfo{Name: "tapline", VendorName: "tapline"}

// Class uids.
const (
	ClassAuthentication    = 3002
	ClassSSHActivity       = 4007
	ClassHTTPActivity      = 4002
	ClassDatastoreActivity = 6005
	ClassAPIActivity       = 6003
	ClassDetectionFinding  = 2004
)

// Event is one OCSF event. The attributes a class does not define stay empty and
// are omitted, so one type serves every class tapline emits.
type Event struct {
	ActivityID   int      `json:"activity_id"`
	ActivityName string   `json:"activity_name,omitempty"`
	CategoryUID  int      `json:"category_uid"`
	CategoryName string   `json:"category_name,omitempty"`
	ClassUID     int      `json:"class_uid"`
	ClassName    string   `json:"class_name,omitempty"`
	TypeUID      int      `json:"type_uid"`
	TypeName     string   `json:"type_name,omitempty"`
	SeverityID   int      `json:"severity_id"`
	Severity     string   `json:"severity,omitempty"`
	Time         int64    `json:"time"`
	StartTime    int64    `json:"start_time,omitempty"`
	EndTime      int64    `json:"end_time,omitempty"`
	Duration     *int64   `json:"duration,omitempty"`
	StatusID     *int     `json:"status_id,omitempty"`
	Status       string   `json:"status,omitempty"`
	StatusCode   string   `json:"status_code,omitempty"`
	StatusDetail string   `json:"status_detail,omitempty"`
	Message      string   `json:"message,omitempty"`
	Metadata     Metadata `json:"metadata"`

	Actor       *Actor    `json:"actor,omitempty"`
	User        *User     `json:"user,omitempty"`
	Session     *Session  `json:"session,omitempty"`
	SrcEndpoint *Endpoint `json:"src_endpoint,omitempty"`
	DstEndpoint *Endpoint `json:"dst_endpoint,omitempty"`

	// Authentication.
	AuthProtocolID *int     `json:"auth_protocol_id,omitempty"`
	AuthProtocol   string   `json:"auth_protocol,omitempty"`
	LogonTypeID    *int     `json:"logon_type_id,omitempty"`
	LogonType      string   `json:"logon_type,omitempty"`
	IsRemote       *bool    `json:"is_remote,omitempty"`
	Service        *Service `json:"service,omitempty"`

	// Datastore Activity.
	Database  *Database  `json:"database,omitempty"`
	QueryInfo *QueryInfo `json:"query_info,omitempty"`
	TypeID    *int       `json:"type_id,omitempty"`
	Type      string     `json:"type,omitempty"`

	// HTTP Activity and API Activity.
	HTTPRequest *HTTPRequest `json:"http_request,omitempty"`
	API         *API         `json:"api,omitempty"`

	// Detection Finding.
	FindingInfo *FindingInfo `json:"finding_info,omitempty"`
	IsAlert     *bool        `json:"is_alert,omitempty"`
	Resources   []Resource   `json:"resources,omitempty"`

	// Unmapped carries tapline's own fields (the session/seq reference among them),
	// under the audit record's field names.
	Unmapped map[string]any `json:"unmapped,omitempty"`
}

// Metadata is the OCSF metadata object.
type Metadata struct {
	Version        string      `json:"version"`
	Product        ProductInfo `json:"product"`
	UID            string      `json:"uid"`
	CorrelationUID string      `json:"correlation_uid,omitempty"`
	Sequence       *int64      `json:"sequence,omitempty"`
	LogName        string      `json:"log_name,omitempty"`
	EventCode      string      `json:"event_code,omitempty"`
	OriginalTime   string      `json:"original_time,omitempty"`
	Labels         []string    `json:"labels,omitempty"`
}

// ProductInfo is the OCSF product object.
type ProductInfo struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version,omitempty"`
}

// Actor is who acted, and in which session.
type Actor struct {
	User    *User    `json:"user,omitempty"`
	Session *Session `json:"session,omitempty"`
	AppName string   `json:"app_name,omitempty"`
}

// User is the agent's identity from its token.
type User struct {
	UID           string  `json:"uid,omitempty"`
	Name          string  `json:"name,omitempty"`
	FullName      string  `json:"full_name,omitempty"`
	EmailAddr     string  `json:"email_addr,omitempty"`
	CredentialUID string  `json:"credential_uid,omitempty"`
	Groups        []Group `json:"groups,omitempty"`
}

// Group is a token group.
type Group struct {
	Name string `json:"name"`
}

// Session is the tapline session; its uid is what `tapline replay` takes.
type Session struct {
	UID         string `json:"uid"`
	Issuer      string `json:"issuer,omitempty"`
	CreatedTime int64  `json:"created_time,omitempty"`
	IsRemote    *bool  `json:"is_remote,omitempty"`
}

// Endpoint is a network endpoint: the agent (src) or the target (dst).
type Endpoint struct {
	IP      string `json:"ip,omitempty"`
	Port    int    `json:"port,omitempty"`
	Name    string `json:"name,omitempty"`
	SvcName string `json:"svc_name,omitempty"`
	Owner   *User  `json:"owner,omitempty"`
}

// Service is the target as a service.
type Service struct {
	Name string `json:"name"`
}

// Database is a Postgres target.
type Database struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type,omitempty"`
}

// QueryInfo is the SQL a command ran (masked).
type QueryInfo struct {
	QueryString string `json:"query_string"`
	UID         string `json:"uid,omitempty"`
}

// HTTPRequest is an HTTP command.
type HTTPRequest struct {
	HTTPMethod string `json:"http_method,omitempty"`
	URL        *URL   `json:"url,omitempty"`
}

// URL is a request path.
type URL struct {
	Path string `json:"path"`
}

// API is a Kubernetes API call.
type API struct {
	Operation string   `json:"operation"`
	Service   *Service `json:"service,omitempty"`
}

// FindingInfo describes an integrity alert.
type FindingInfo struct {
	UID        string   `json:"uid"`
	Title      string   `json:"title,omitempty"`
	Desc       string   `json:"desc,omitempty"`
	Types      []string `json:"types,omitempty"`
	FirstSeen  int64    `json:"first_seen_time,omitempty"`
	DataSource []string `json:"data_sources,omitempty"`
}

// Resource is the session a finding is about.
type Resource struct {
	UID  string `json:"uid"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
}

// Marshal returns the event's JSON.
func (e *Event) Marshal() ([]byte, error) { return json.Marshal(e) }

// FromAudit maps one audit record to its OCSF event.
func FromAudit(r *audit.Record) (Event, error) {
	ts, err := millis(r.Time)
	if err != nil {
		return Event{}, fmt.Errorf("audit record %s: ts: %w", r.ID, err)
	}
	e := Event{Time: ts, Message: message(r), Metadata: metadata(r), Unmapped: unmapped(r)}
	e.SeverityID, e.Severity = severity(r.Severity)
	switch r.Type {
	case audit.TypeCommand:
		err = command(&e, r)
	case audit.TypeIntegrity:
		finding(&e, r)
	default:
		lifecycle(&e, r)
	}
	if err != nil {
		return Event{}, err
	}
	e.TypeUID = e.ClassUID*100 + e.ActivityID
	e.TypeName = e.ClassName + ": " + e.ActivityName
	return e, nil
}

func metadata(r *audit.Record) Metadata {
	seq := r.Seq
	m := Metadata{Version: Version, Product: Product, UID: r.ID, CorrelationUID: r.SessionID, Sequence: &seq,
		LogName: "tapline.audit", EventCode: r.Type, OriginalTime: r.Time}
	if r.Protocol != "" {
		m.Labels = []string{strings.ToLower(r.Protocol)}
	}
	return m
}

// lifecycle maps session start, denied, end, abandoned and resumed to Authentication:
// the agent logging on to (or off) the target through the gateway.
func lifecycle(e *Event, r *audit.Record) {
	e.CategoryUID, e.CategoryName, e.ClassUID, e.ClassName = 3, "Identity & Access Management", ClassAuthentication, "Authentication"
	e.User = user(r)
	if e.User == nil {
		e.User = &User{UID: "unknown"} // required by the class; a denial before the token was read
	}
	e.Session = session(r)
	e.SrcEndpoint, e.DstEndpoint = src(r, false), dst(r)
	e.Service = &Service{Name: orUnknown(r.Target)}
	if r.UserIssuer != "" {
		e.AuthProtocolID, e.AuthProtocol = ptr(4), "OpenID"
	}
	e.LogonTypeID, e.LogonType, e.IsRemote = ptr(3), "Network", ptr(true)
	e.StatusDetail = r.Reason
	switch r.Type {
	case audit.TypeSessionStart:
		e.ActivityID, e.ActivityName = 1, "Logon"
		status(e, 1, "Success")
	case audit.TypeSessionDenied:
		e.ActivityID, e.ActivityName = 1, "Logon"
		status(e, 2, "Failure")
	case audit.TypeSessionEnd:
		e.ActivityID, e.ActivityName = 2, "Logoff"
		status(e, 1, "Success")
	case audit.TypeSessionAbandoned:
		e.ActivityID, e.ActivityName = 2, "Logoff"
		status(e, 99, "Abandoned")
	default: // resumed, and types added later
		e.ActivityID, e.ActivityName = 99, "Resume"
		status(e, 99, "Resumed")
	}
}

// classes map a protocol's OCSF class family (protocol.Audited) to its activity.
var classes = map[string]func(*Event, *audit.Record){
	"datastore": datastore, "ssh": sshActivity, "http": httpActivity, "api": apiActivity,
}

// command maps a stitched command to its protocol's activity class.
func command(e *Event, r *audit.Record) error {
	a, err := protocol.Of[protocol.Audited](schemas.Protocol(r.Protocol))
	if err != nil {
		return fmt.Errorf("audit record %s: no OCSF class: %w", r.ID, err)
	}
	activity, ok := classes[a.OCSFClass()]
	if !ok {
		return fmt.Errorf("audit record %s: protocol %s names OCSF class %q, which is not mapped", r.ID, r.Protocol, a.OCSFClass())
	}
	activity(e, r)
	e.StartTime, _ = millis(r.StartedAt)
	e.EndTime, _ = millis(r.EndedAt)
	if r.DurationMS != nil {
		d := int64(*r.DurationMS)
		e.Duration = &d
	}
	switch r.Status {
	case "ok":
		status(e, 1, "Success")
	case "error":
		status(e, 2, "Failure")
	default:
		status(e, 99, r.Status)
	}
	e.StatusDetail = r.Error
	if r.ExitStatus != nil {
		e.StatusCode = strconv.Itoa(int(*r.ExitStatus))
	}
	return nil
}

func datastore(e *Event, r *audit.Record) {
	e.CategoryUID, e.CategoryName, e.ClassUID, e.ClassName = 6, "Application Activity", ClassDatastoreActivity, "Datastore Activity"
	e.ActivityID, e.ActivityName = sqlActivity(r.CommandText)
	e.Actor = &Actor{User: user(r), Session: session(r)}
	e.SrcEndpoint, e.DstEndpoint = src(r, false), dst(r)
	e.Database = &Database{Name: orUnknown(r.Target), TypeID: 1, Type: "Relational"}
	e.TypeID, e.Type = ptr(1), "Database"
	e.QueryInfo = &QueryInfo{QueryString: r.CommandText, UID: r.ID}
}

// sqlActivity names a statement by its first keyword. Several statements in one
// simple query take the first one's.
func sqlActivity(sql string) (int, string) {
	switch firstWord(sql) {
	case "SELECT", "WITH", "TABLE", "VALUES", "SHOW", "EXPLAIN", "FETCH":
		return 1, "Read"
	case "UPDATE", "ALTER", "GRANT", "REVOKE", "SET", "RESET":
		return 2, "Update"
	case "INSERT", "COPY", "MERGE":
		return 5, "Write"
	case "CREATE":
		return 6, "Create"
	case "DELETE", "DROP", "TRUNCATE":
		return 7, "Delete"
	}
	return 4, "Query"
}

func firstWord(s string) string {
	s = strings.TrimLeft(s, " \t\r\n(;")
	end := strings.IndexFunc(s, func(r rune) bool { return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') })
	if end >= 0 {
		s = s[:end]
	}
	return strings.ToUpper(s)
}

// sshActivity: the class has no actor, so the agent is the source endpoint's owner.
func sshActivity(e *Event, r *audit.Record) {
	e.CategoryUID, e.CategoryName, e.ClassUID, e.ClassName = 4, "Network Activity", ClassSSHActivity, "SSH Activity"
	e.ActivityID, e.ActivityName = 6, "Traffic"
	e.SrcEndpoint, e.DstEndpoint = src(r, true), dst(r)
}

func httpActivity(e *Event, r *audit.Record) {
	e.CategoryUID, e.CategoryName, e.ClassUID, e.ClassName = 4, "Network Activity", ClassHTTPActivity, "HTTP Activity"
	method, path := requestLine(r.CommandText)
	e.ActivityID, e.ActivityName = httpMethodActivity(method)
	e.HTTPRequest = &HTTPRequest{HTTPMethod: method}
	if path != "" {
		e.HTTPRequest.URL = &URL{Path: path}
	}
	e.SrcEndpoint, e.DstEndpoint = src(r, true), dst(r)
}

func httpMethodActivity(method string) (int, string) {
	for i, m := range []string{"", "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE", "PATCH"} {
		if i > 0 && m == method {
			return i, strings.ToUpper(m[:1]) + strings.ToLower(m[1:])
		}
	}
	return 99, "Other"
}

// apiActivity maps a Kubernetes API call; its text is "VERB PATH", the verb in
// Kubernetes' terms (get, list, watch, create, update, patch, delete…).
func apiActivity(e *Event, r *audit.Record) {
	e.CategoryUID, e.CategoryName, e.ClassUID, e.ClassName = 6, "Application Activity", ClassAPIActivity, "API Activity"
	verb, path := requestLine(r.CommandText)
	verb = strings.ToLower(verb)
	switch verb {
	case "create", "post":
		e.ActivityID, e.ActivityName = 1, "Create"
	case "get", "list", "watch":
		e.ActivityID, e.ActivityName = 2, "Read"
	case "update", "patch", "put":
		e.ActivityID, e.ActivityName = 3, "Update"
	case "delete", "deletecollection":
		e.ActivityID, e.ActivityName = 4, "Delete"
	default:
		e.ActivityID, e.ActivityName = 99, "Other"
	}
	e.API = &API{Operation: strings.TrimSpace(verb + " " + path), Service: &Service{Name: orUnknown(r.Target)}}
	e.Actor = &Actor{User: user(r), Session: session(r)}
	e.SrcEndpoint, e.DstEndpoint = src(r, false), dst(r)
}

func requestLine(text string) (string, string) {
	f := strings.Fields(text)
	switch len(f) {
	case 0:
		return "", ""
	case 1:
		return strings.ToUpper(f[0]), ""
	}
	return strings.ToUpper(f[0]), f[1]
}

// finding maps an integrity alert to a Detection Finding about the session.
func finding(e *Event, r *audit.Record) {
	e.CategoryUID, e.CategoryName, e.ClassUID, e.ClassName = 2, "Findings", ClassDetectionFinding, "Detection Finding"
	e.ActivityID, e.ActivityName = 1, "Create"
	status(e, 1, "New")
	e.IsAlert = ptr(true)
	e.FindingInfo = &FindingInfo{UID: r.ID, Title: "tapline integrity: " + r.Alert, Desc: r.AlertDetail,
		Types: []string{"tapline.integrity." + r.Alert}, FirstSeen: e.Time, DataSource: []string{"tapline.frames.raw"}}
	e.Resources = []Resource{{UID: r.SessionID, Name: r.Target, Type: "tapline session"}}
}

func user(r *audit.Record) *User {
	if r.UserSubject == "" && r.UserEmail == "" && r.UserName == "" {
		return nil
	}
	u := &User{UID: r.UserSubject, Name: r.UserSubject, FullName: r.UserName, EmailAddr: r.UserEmail, CredentialUID: r.TokenID}
	if u.Name == "" {
		u.Name = r.UserEmail
	}
	for _, g := range r.UserGroups {
		u.Groups = append(u.Groups, Group{Name: g})
	}
	return u
}

func session(r *audit.Record) *Session {
	if r.SessionID == "" {
		return nil
	}
	return &Session{UID: r.SessionID, Issuer: r.UserIssuer, IsRemote: ptr(true)}
}

// src is the agent's endpoint as the gateway saw it; owned names the agent on it,
// for classes without an actor.
func src(r *audit.Record, owned bool) *Endpoint {
	ep := &Endpoint{}
	if host, port, err := net.SplitHostPort(r.ClientAddr); err == nil && net.ParseIP(host) != nil {
		ep.IP = host
		ep.Port, _ = strconv.Atoi(port)
	} else {
		ep.Name = orUnknown(r.ClientAddr)
	}
	if owned {
		ep.Owner = user(r)
	}
	return ep
}

func dst(r *audit.Record) *Endpoint {
	return &Endpoint{Name: orUnknown(r.Target), SvcName: strings.ToLower(r.Protocol)}
}

func status(e *Event, id int, name string) {
	e.StatusID, e.Status = &id, name
}

// severity maps the audit severities to OCSF's severity_id.
func severity(s string) (int, string) {
	switch s {
	case "info":
		return 1, "Informational"
	case "low":
		return 2, "Low"
	case "medium":
		return 3, "Medium"
	case "high":
		return 4, "High"
	}
	return 0, "Unknown"
}

func message(r *audit.Record) string {
	switch r.Type {
	case audit.TypeCommand:
		return r.CommandText
	case audit.TypeIntegrity:
		return r.Alert + ": " + r.AlertDetail
	}
	msg := r.Type + " " + r.SessionID
	if r.Reason != "" {
		msg += ": " + r.Reason
	}
	return msg
}

// unmapped keeps the audit fields OCSF has no attribute for, so nothing is lost
// and the session/seq reference is explicit.
func unmapped(r *audit.Record) map[string]any {
	m := map[string]any{"schema": r.Schema, "type": r.Type, "session_id": r.SessionID, "seq": r.Seq, "outcome": r.Outcome}
	set := func(k string, v any, ok bool) {
		if ok {
			m[k] = v
		}
	}
	set("protocol", r.Protocol, r.Protocol != "")
	set("gateway_id", r.GatewayID, r.GatewayID != "")
	setInt(m, "command_seq", r.CommandSeq)
	setInt(m, "command_seq_end", r.CommandSeqEnd)
	set("command_kind", r.CommandKind, r.CommandKind != "")
	set("command_params", r.CommandParams, len(r.CommandParams) > 0)
	setInt(m, "channel", r.Channel)
	setInt(m, "rows", r.Rows)
	set("masked_count", r.MaskedCount, r.MaskedCount > 0)
	set("masked_types", r.MaskedTypes, len(r.MaskedTypes) > 0)
	set("session_status", r.SessionStatus, r.SessionStatus != "")
	setInt(m, "frames", r.Frames)
	setInt(m, "bytes_client", r.BytesClient)
	setInt(m, "bytes_server", r.BytesServer)
	setInt(m, "commands", r.Commands)
	setInt(m, "last_seq", r.LastSeq)
	set("final_hash", r.FinalHash, r.FinalHash != "")
	if r.SignatureOK != nil {
		m["signature_ok"] = *r.SignatureOK
	}
	set("integrity", r.Integrity, len(r.Integrity) > 0)
	set("alert", r.Alert, r.Alert != "")
	return m
}

func millis(ts string) (int64, error) {
	if ts == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return 0, err
	}
	return t.UnixMilli(), nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func setInt[T int64 | int32](m map[string]any, k string, p *T) {
	if p != nil {
		m[k] = *p
	}
}

func ptr[T any](v T) *T { return &v }
