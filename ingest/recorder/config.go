package recorder

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/schemas"
)

// Mode says when a CLIENT frame counts as recorded.
type Mode string

const (
	// Strict: Session.Client returns only after Kafka acknowledged the frame.
	Strict Mode = "strict"
	// Buffered: frames in both directions are produced asynchronously, within
	// MaxBufferedBytes of unacknowledged data.
	Buffered Mode = "buffered"
)

// Defaults for zero Config fields.
const (
	DefaultFragmentBytes    = 900 << 10
	DefaultProduceTimeout   = 10 * time.Second
	DefaultMaxBufferedBytes = 64 << 20
	// DefaultLinger is how long a frame nobody waits for (SERVER frames,
	// every frame in buffered mode) may wait to share a produce request.
	DefaultLinger = 5 * time.Millisecond
	// DefaultRounds is how many group-commit rounds may be unacknowledged at
	// once (commit.go): what arrives meanwhile waits and goes out together.
	DefaultRounds = 1

	// MaxFragmentBytes keeps a fragment well inside what the schemas codec
	// decodes and what a broker can be configured to accept in one batch.
	MaxFragmentBytes = 8 << 20
)

// roundBytes is how much the committer holds back at most (commit.go): a
// stream of large SERVER messages goes out in requests of about this size.
const roundBytes = 1 << 20

// recordOverhead is what one frame costs besides its payload when accounting
// buffered bytes: Avro header fields, key, and the client's per-record state.
const recordOverhead = 512

// Config configures a Recorder.
type Config struct {
	Brokers   []string
	Topic     string // default schemas.TopicFramesRaw
	Mode      Mode   // default Strict
	GatewayID string // default: host name

	// KeyFile holds the gateway's Ed25519 signing key (PKCS#8 PEM or a raw
	// 32-byte seed). It is created, mode 0600, when missing. Empty means an
	// ephemeral key for this process only, which nobody can later trust.
	KeyFile string

	FragmentBytes int // default DefaultFragmentBytes

	// ProduceTimeout bounds how long any frame may wait for Kafka's
	// acknowledgement (and for buffer space) before the session fails.
	ProduceTimeout time.Duration

	// MaxBufferedBytes bounds unacknowledged frame bytes across all sessions.
	// Producing blocks past it, for at most ProduceTimeout.
	MaxBufferedBytes int64

	// Linger is how long a frame that nobody waits for may wait to share a
	// produce request with others (default DefaultLinger; negative: none).
	// Frames a caller waits for never linger. Longer means fewer, larger
	// requests (less CPU for the gateway and the broker) and, for buffered
	// mode, that much more to lose if the gateway dies.
	Linger time.Duration

	// Rounds is how many hand-overs to the client (group-commit rounds) may
	// be unacknowledged at once (default DefaultRounds; negative: no limit,
	// franz-go's five requests in flight decide). Fewer means larger requests
	// under load, and a waited frame may wait for one round trip more.
	Rounds int

	// Client, when set, is used instead of a client built from Brokers. Build
	// it with ProducerOpts so that acks, partitioning and timeouts match; the
	// Recorder does not close it.
	Client *kgo.Client

	// Opts are added to the options of the client built from Brokers: TLS and
	// SASL (kafkaconn.Security.Opts). Unused with Client.
	Opts []kgo.Opt

	// Codec frames the values; nil is Single-Object Encoding. A codec from
	// schemas/registry writes the Confluent framing with the registry's id.
	Codec *schemas.Codec[schemas.Frame]

	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Codec == nil {
		c.Codec = schemas.FrameCodec()
	}
	if c.Topic == "" {
		c.Topic = schemas.TopicFramesRaw
	}
	if c.Mode == "" {
		c.Mode = Strict
	}
	if c.GatewayID == "" {
		c.GatewayID, _ = os.Hostname()
	}
	if c.FragmentBytes == 0 {
		c.FragmentBytes = DefaultFragmentBytes
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = DefaultProduceTimeout
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.Rounds == 0 {
		c.Rounds = DefaultRounds
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Mode != Strict && c.Mode != Buffered {
		errs = append(errs, fmt.Errorf("mode %q: want %q or %q", c.Mode, Strict, Buffered))
	}
	if c.Client == nil && len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no Kafka brokers configured"))
	}
	if c.GatewayID == "" {
		errs = append(errs, errors.New("gateway id is empty and the host name is unknown"))
	}
	if c.FragmentBytes < 1 || c.FragmentBytes > MaxFragmentBytes {
		errs = append(errs, fmt.Errorf("fragment bytes %d: want 1..%d", c.FragmentBytes, MaxFragmentBytes))
	}
	// A held frame is in flight for the watchdog: it must go out well before
	// the produce timeout fails its session.
	if c.Linger > time.Second || c.Linger > c.ProduceTimeout/2 {
		errs = append(errs, fmt.Errorf("linger %s: want at most 1s and half the produce timeout (%s)", c.Linger, c.ProduceTimeout))
	}
	if c.ProduceTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("produce timeout %s: want at least 100ms", c.ProduceTimeout))
	}
	// A message's fragments are produced back to back; the buffer must hold a
	// few of them or one large message would stall every session.
	if min := 4 * int64(c.FragmentBytes+recordOverhead); c.MaxBufferedBytes < min {
		errs = append(errs, fmt.Errorf("max buffered bytes %d: want at least 4 fragments (%d)", c.MaxBufferedBytes, min))
	}
	return errors.Join(errs...)
}

// batchMaxBytes is the largest record batch the producer builds: a whole
// fragment must fit in one. The topic's max.message.bytes must allow it
// (Kafka's default 1 MiB does for the default fragment size).
func (c Config) batchMaxBytes() int32 {
	return int32(max(1_000_012, c.FragmentBytes+64<<10))
}

// ProducerOpts returns the franz-go options the recorder's producer needs:
// idempotent (the franz-go default), acks from all in-sync replicas, records
// keyed by session id hashed to a partition, no linger in the client (the
// recorder batches frames itself, and a strict CLIENT frame waits for its ack),
// and delivery bounded by ProduceTimeout. Buffer limits
// are a safety net above the recorder's own accounting. Callers that pass
// their own Config.Client build it with these plus their seeds.
func ProducerOpts(cfg Config) []kgo.Opt {
	cfg = cfg.withDefaults()
	return []kgo.Opt{
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(0),
		// franz-go's floors; the recorder's own timers enforce shorter values.
		kgo.RecordDeliveryTimeout(max(cfg.ProduceTimeout, time.Second)),
		kgo.ProduceRequestTimeout(max(cfg.ProduceTimeout, 100*time.Millisecond)),
		kgo.ProducerBatchMaxBytes(cfg.batchMaxBytes()),
		kgo.MaxBufferedBytes(int(cfg.MaxBufferedBytes) + 2*int(cfg.batchMaxBytes())),
		kgo.MaxBufferedRecords(int(cfg.MaxBufferedBytes/recordOverhead) + 1024),
		kgo.ClientID("tapline-gateway"),
	}
}
