package schemas

import (
	"errors"
	"fmt"
	"time"
)

// Frames written with the current schema are decoded by hand, as they are
// encoded (frame_encode.go): goavro's generic decode builds a map[string]any per
// frame and per nested record, boxes every value, and frameFromNative then
// unboxes them again, which was the processors' and sinks' largest cost per
// frame after encoding. Values written with an older schema still go through
// goavro and the reader's defaults. Any change to frame.avsc must be mirrored
// here; tests and a fuzz target compare the two decoders.
//
// What goavro accepts, this accepts with the same result, with one exception
// nobody writes: a varint longer than a long (10 bytes) or an int (5 bytes) is
// refused here, where goavro drops the overflowing bits.
//
// Byte fields alias the input, as goavro's do: a frame decoded from a record
// value keeps that value alive, and callers never modify either. Their capacity
// is cut to their length, so an append to one cannot overwrite the next field.

var errShort = errors.New("value ends early")

// frameDecoder reads one Avro binary frame body.
type frameDecoder struct {
	b   []byte
	err error
}

func decodeFrameBody(body []byte) (Frame, error) {
	d := frameDecoder{b: body}
	var f Frame
	f.SessionID = d.string()
	f.Seq = d.long()
	f.TS = d.timeMicros()
	f.Direction = enumSymbol(&d, directionSymbols)
	f.Protocol = enumSymbol(&d, protocolSymbols)
	f.Kind = d.string()
	f.Channel = d.long()
	f.Payload = d.bytes()
	f.Fragment = d.int()
	f.Final = d.bool()
	f.PayloadSalt = d.bytes()
	f.PayloadDigest = d.bytes()
	f.PrevHash = d.bytes()
	f.Hash = d.bytes()
	f.GatewayID = d.string()
	f.Masks = d.longMap()
	if d.present() {
		f.Start = d.start()
	}
	if d.present() {
		f.Denial = d.string()
	}
	if d.present() {
		f.End = d.end()
	}
	if d.present() {
		f.ProcessorSig = &ProcessorSig{Key: d.bytes(), Signature: d.bytes()}
	}
	if d.err != nil {
		return Frame{}, d.err
	}
	if len(d.b) != 0 {
		return Frame{}, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return f, nil
}

func (d *frameDecoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil // every later read fails fast and returns zero values
}

// long reads a zigzag varint of at most 10 bytes.
func (d *frameDecoder) long() int64 {
	var u uint64
	for i := 0; i < len(d.b) && i < binary64Max; i++ {
		c := d.b[i]
		u |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			d.b = d.b[i+1:]
			return int64(u>>1) ^ -int64(u&1)
		}
	}
	if len(d.b) >= binary64Max {
		d.fail(errors.New("varint longer than a long"))
	} else {
		d.fail(errShort)
	}
	return 0
}

// int reads a zigzag varint of at most 5 bytes, with goavro's arithmetic.
func (d *frameDecoder) int() int32 {
	var v int
	for i := 0; i < len(d.b) && i < 5; i++ {
		c := d.b[i]
		v |= int(c&0x7f) << (7 * i)
		if c < 0x80 {
			d.b = d.b[i+1:]
			return int32(v>>1) ^ -int32(v&1)
		}
	}
	if len(d.b) >= 5 {
		d.fail(errors.New("varint longer than an int"))
	} else {
		d.fail(errShort)
	}
	return 0
}

func (d *frameDecoder) bool() bool {
	if len(d.b) == 0 {
		d.fail(errShort)
		return false
	}
	c := d.b[0]
	if c > 1 {
		d.fail(fmt.Errorf("boolean byte %d", c))
		return false
	}
	d.b = d.b[1:]
	return c == 1
}

// bytes reads a length-prefixed byte string; the length is checked against what
// is left before anything is sliced, so a hostile length allocates nothing.
func (d *frameDecoder) bytes() []byte {
	n := d.long()
	if d.err != nil {
		return nil
	}
	if n < 0 || n > int64(len(d.b)) {
		d.fail(fmt.Errorf("length %d with %d bytes left", n, len(d.b)))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *frameDecoder) string() string { return string(d.bytes()) }

// timeMicros reads a timestamp-micros as goavro converts it.
func (d *frameDecoder) timeMicros() time.Time {
	us := d.long()
	s := us / 1e6
	return time.Unix(s, (us-s*1e6)*1e3).UTC()
}

func enumSymbol[T any](d *frameDecoder, symbols []T) T {
	var zero T
	i := d.long()
	if d.err != nil {
		return zero
	}
	if i < 0 || i >= int64(len(symbols)) {
		d.fail(fmt.Errorf("enum index %d of %d symbols", i, len(symbols)))
		return zero
	}
	return symbols[i]
}

// present reads the branch of a ["null", T] union: true for T.
func (d *frameDecoder) present() bool {
	switch i := d.long(); {
	case d.err != nil:
		return false
	case i == unionNull:
		return false
	case i == unionValue:
		return true
	default:
		d.fail(fmt.Errorf("union branch %d of 2", i))
		return false
	}
}

// blockCount reads the count of the next array or map block (0 ends). A negative
// count is followed by the block's size in bytes, which is not needed. A count
// above what is left (each item takes a byte at least) is refused before any
// allocation.
func (d *frameDecoder) blockCount() int {
	n := d.long()
	if n < 0 {
		if n == -n { // math.MinInt64 has no positive
			d.fail(fmt.Errorf("block count %d", n))
			return 0
		}
		n = -n
		d.long()
	}
	if d.err != nil {
		return 0
	}
	if n > int64(len(d.b)) || n > maxBlockCount {
		d.fail(fmt.Errorf("block count %d with %d bytes left", n, len(d.b)))
		return 0
	}
	return int(n)
}

// longMap reads a map of longs; an empty map is nil, as frameFromNative returns it.
func (d *frameDecoder) longMap() map[string]int64 {
	var m map[string]int64
	for n := d.blockCount(); n > 0; n = d.blockCount() {
		if m == nil {
			m = make(map[string]int64, n)
		}
		for range n {
			k := d.string()
			m[k] = d.long()
		}
	}
	return m
}

func (d *frameDecoder) stringMap() map[string]string {
	var m map[string]string
	for n := d.blockCount(); n > 0; n = d.blockCount() {
		if m == nil {
			m = make(map[string]string, n)
		}
		for range n {
			k := d.string()
			m[k] = d.string()
		}
	}
	return m
}

func (d *frameDecoder) strings() []string {
	var out []string
	for n := d.blockCount(); n > 0; n = d.blockCount() {
		for range n {
			out = append(out, d.string())
		}
	}
	return out
}

func (d *frameDecoder) start() *SessionStart {
	s := &SessionStart{
		Issuer:  d.string(),
		Subject: d.string(),
		Email:   d.string(),
		Name:    d.string(),
		Groups:  d.strings(),
		TokenID: d.string(),
	}
	if d.present() {
		s.TokenExpiry = d.timeMicros()
	}
	s.Target = d.string()
	s.TargetAddr = d.string()
	s.ClientAddr = d.string()
	s.Params = d.stringMap()
	return s
}

func (d *frameDecoder) end() *SessionEnd {
	return &SessionEnd{
		Reason:      d.string(),
		LastSeq:     d.long(),
		Frames:      d.long(),
		BytesClient: d.long(),
		BytesServer: d.long(),
		FinalHash:   d.bytes(),
		Signature:   d.bytes(),
		GatewayKey:  d.bytes(),
	}
}
