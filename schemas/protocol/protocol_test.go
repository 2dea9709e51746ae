package protocol_test

import (
	"strings"
	"testing"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/schemas/protocol"
	_ "github.com/tapline/tapline/schemas/protocol/all"
)

func TestRegisteredProtocols(t *testing.T) {
	for _, name := range []schemas.Protocol{schemas.Postgres, schemas.SSH} {
		p, ok := protocol.Lookup(name)
		if !ok {
			t.Fatalf("%s is not registered", name)
		}
		if p.Name() != name || len(p.Kinds()) == 0 {
			t.Errorf("%s: name %s, %d kinds", name, p.Name(), len(p.Kinds()))
		}
	}
	if _, err := protocol.Of[protocol.Audited]("GOPHER"); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("unknown protocol: err %v", err)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering POSTGRES twice did not panic")
		}
	}()
	p, _ := protocol.Lookup(schemas.Postgres)
	protocol.Register(p)
}
