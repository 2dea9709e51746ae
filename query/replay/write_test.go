package replay

import (
	"testing"

	"github.com/tapline/tapline/schemas"
)

func TestUnsupportedReplay(t *testing.T) {
	if err := Check(schemas.Protocol("GOPHER"), FormatText); err == nil {
		t.Error("replay of an unregistered protocol accepted")
	}
	if err := Check(schemas.Kubernetes, FormatAsciicast); err != nil {
		t.Errorf("asciicast of a Kubernetes exec refused: %v", err)
	}
	if err := Check(schemas.SSH, FormatHAR); err == nil {
		t.Error("HAR of an SSH session accepted")
	}
	if err := Check(schemas.Postgres, FormatAsciicast); err == nil {
		t.Error("asciicast of a Postgres session accepted")
	}
}
