package replay

import (
	"testing"

	"github.com/tapline/tapline/schemas"
)

func TestUnsupportedReplay(t *testing.T) {
	if err := Check(schemas.Kubernetes, FormatText); err == nil {
		t.Error("Kubernetes replay accepted")
	}
	if err := Check(schemas.SSH, FormatHAR); err == nil {
		t.Error("HAR of an SSH session accepted")
	}
	if err := Check(schemas.Postgres, FormatAsciicast); err == nil {
		t.Error("asciicast of a Postgres session accepted")
	}
}
