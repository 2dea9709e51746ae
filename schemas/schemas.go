// Package schemas holds tapline's Avro schemas (embedded), the Go types they map to,
// the codecs that turn one into the other, and the wire framing of Kafka values:
// Avro Single-Object Encoding by default, or the Confluent wire format (magic 0 and a
// 4-byte schema id) when a schema registry id is configured.
//
// Every committed version of each schema is kept under history/ and embedded, so a
// reader decodes a value with the schema it was written with and then fills the
// fields that schema lacked with the current schema's defaults.
package schemas

import (
	"embed"

	"github.com/linkedin/goavro/v2"
)

//go:embed *.avsc history
var files embed.FS

// Decoding limits. goavro's defaults let a hostile varint announce a block of 2^31
// items or bytes; no tapline value needs more than a Kafka record holds, so cap both.
const (
	maxBlockCount = 1 << 20  // array or map entries in one block
	maxBlockSize  = 16 << 20 // bytes in one bytes/string value (Kafka records are ~1 MiB)
)

func init() {
	goavro.MaxBlockCount = min(goavro.MaxBlockCount, int64(maxBlockCount))
	goavro.MaxBlockSize = min(goavro.MaxBlockSize, int64(maxBlockSize))
}

// Direction says who sent a frame's bytes.
type Direction string

const (
	Client Direction = "CLIENT" // agent → target
	Server Direction = "SERVER" // target → agent, and frames emitted by the gateway itself
)

// Protocol is the protocol an edge proxy speaks.
type Protocol string

const (
	Postgres   Protocol = "POSTGRES"
	SSH        Protocol = "SSH"
	Kubernetes Protocol = "KUBERNETES"
	HTTP       Protocol = "HTTP"
)

// Valid reports whether p is a symbol of the frame schema's protocol enum (and
// so has a code in the hash chain): what a recorder may write.
func (p Protocol) Valid() bool {
	_, ok := protocolCode[p]
	return ok
}

// Lifecycle frame kinds, emitted by the gateway rather than read off the wire.
const (
	KindSessionStart  = "session.start"
	KindSessionDenied = "session.denied"
	KindSessionEnd    = "session.end"
)

// MaskWithheld is the mask type of a frame whose payload the processors withheld
// because they failed on it: it is forwarded without payload and still verifies.
const MaskWithheld = "withheld"

// Kafka topics (docs/architecture.md).
const (
	TopicFramesRaw = "tapline.frames.raw"
	TopicFrames    = "tapline.frames"
	TopicCommands  = "tapline.commands"
	TopicSessions  = "tapline.sessions"
	TopicAudit     = "tapline.audit"
	// TopicFramesDeadLetter holds raw records the processors failed on (restricted).
	TopicFramesDeadLetter = "tapline.frames.deadletter"
)
