package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/query/wire"
)

// A subject or target carrying terminal controls is printed escaped, and a session
// whose signature is not trusted says so.
func TestSessionsTableEscapesAndMarksUntrusted(t *testing.T) {
	no, yes := false, true
	var b strings.Builder
	writeSessionsTable(&b, []wire.Session{
		{SessionID: "s1", Subject: "eve\r\x1b[2Kalice", Target: "db", Protocol: "POSTGRES", Status: "ended", StartedAt: time.Now(), SignatureOK: &no},
		{SessionID: "s2", Subject: "bob", Target: "db", Protocol: "POSTGRES", Status: "ended", StartedAt: time.Now(), SignatureOK: &yes},
	})
	out := b.String()
	if strings.ContainsAny(out, "\r\x1b") || !strings.Contains(out, `eve\r\x1b[2Kalice`) {
		t.Errorf("subject not escaped:\n%q", out)
	}
	if !strings.Contains(out, "UNTRUSTED") || !strings.Contains(out, "trusted") {
		t.Errorf("signature column missing:\n%s", out)
	}
}
