package chdb

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/schemas"
	"github.com/tapline/tapline/sinks/clickhouse"
)

// DecodeFrames decodes a frames read (RowBinaryWithNamesAndTypes of the columns
// clickhouse.FrameColumns names, in any order) straight into frames: the same
// frames DecodeRowBinary and clickhouse.ScanFrame give, without boxing every
// value into an `any` and converting it again. A long session's read spent more
// in that than in the consumers. n is the expected row count (capacity only).
//
// The byte columns of a row (payload, salt, digest, hashes) share one allocation,
// so a frame kept by a consumer holds its own bytes and nothing of the page's.
func DecodeFrames(b []byte, n int) ([]schemas.Frame, error) {
	if len(b) == 0 {
		return nil, nil
	}
	r := &reader{b: b}
	cols, err := frameHeader(r)
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("frames: a result of no columns")
	}
	// A row takes at least a byte a column: more rows than that are not there.
	out := make([]schemas.Frame, 0, min(max(n, 0), (len(b)-r.off)/len(cols)+1))
	var row frameRow
	for !r.eof() {
		row.reset()
		for i := range cols {
			if err := cols[i].read(r, &row); err != nil {
				return nil, fmt.Errorf("row %d column %s: %w", len(out), cols[i].name, err)
			}
		}
		row.copyBytes()
		if err := clickhouse.FinishFrame(&row.f, row.start, row.end, string(row.psig)); err != nil {
			return nil, err
		}
		out = append(out, row.f)
	}
	return out, nil
}

// frameRow is a row being decoded: the frame, and its encoded columns as slices
// of the result (valid until the next row).
type frameRow struct {
	f                schemas.Frame
	bytes            [numByteFields][]byte
	start, end, psig []byte
}

// The byte columns, in the order of frameRow.bytes.
const (
	bytePayload = iota
	byteSalt
	byteDigest
	bytePrevHash
	byteHash
	numByteFields
)

func (w *frameRow) reset() {
	*w = frameRow{}
}

// copyBytes gives the frame its byte columns, copied out of the result into one
// allocation. Each field is capped at its own end, so appending to one cannot
// overwrite the next. A column the read did not select stays nil.
func (w *frameRow) copyBytes() {
	total := 0
	for _, p := range w.bytes {
		total += len(p)
	}
	slab := make([]byte, total)
	fields := [numByteFields]*[]byte{&w.f.Payload, &w.f.PayloadSalt, &w.f.PayloadDigest, &w.f.PrevHash, &w.f.Hash}
	off := 0
	for i, p := range w.bytes {
		if p == nil {
			continue
		}
		end := off + copy(slab[off:], p)
		*fields[i] = slab[off:end:end]
		off = end
	}
}

// frameColumn reads one column of a frames row.
type frameColumn struct {
	name string
	kind colKind
	// field is the frameRow.bytes index of a byte column, or the str* index of a
	// string column.
	field int
	scale int64 // DateTime64: nanoseconds per unit
	div   int64 // DateTime64: units per second
	seen  map[string]string
}

type colKind int

const (
	colString colKind = iota // a repeating string field, interned
	colBytes                 // a byte column, copied with the row's others
	colStart                 // session_start, session_end, processor_sig: parsed, not kept
	colEnd
	colProcessorSig
	colSeq
	colChannel
	colFragment
	colBool
	colTime
	colMasks
)

// The string fields of a frame, in the order frameColumn.field numbers them.
const (
	strSessionID = iota
	strDirection
	strProtocol
	strKind
	strGatewayID
	strDenial
)

type colSpec struct {
	kind  colKind
	field int
	types []string // the ClickHouse types accepted for the column
}

var frameColumnSpecs = map[string]colSpec{
	"session_id":     {colString, strSessionID, []string{"String"}},
	"seq":            {colSeq, 0, []string{"Int64"}},
	"ts":             {colTime, 0, nil}, // DateTime64(P[, tz])
	"direction":      {colString, strDirection, []string{"String", "LowCardinality(String)"}},
	"protocol":       {colString, strProtocol, []string{"String", "LowCardinality(String)"}},
	"kind":           {colString, strKind, []string{"String", "LowCardinality(String)"}},
	"channel":        {colChannel, 0, []string{"Int64"}},
	"fragment":       {colFragment, 0, []string{"Int32"}},
	"final":          {colBool, 0, []string{"Bool"}},
	"payload":        {colBytes, bytePayload, []string{"String"}},
	"payload_salt":   {colBytes, byteSalt, []string{"String"}},
	"payload_digest": {colBytes, byteDigest, []string{"String"}},
	"prev_hash":      {colBytes, bytePrevHash, []string{"String"}},
	"hash":           {colBytes, byteHash, []string{"String"}},
	"gateway_id":     {colString, strGatewayID, []string{"String", "LowCardinality(String)"}},
	"masks":          {colMasks, 0, []string{"Map(LowCardinality(String), Int64)", "Map(String, Int64)"}},
	"session_start":  {colStart, 0, []string{"String"}},
	"denial":         {colString, strDenial, []string{"String"}},
	"session_end":    {colEnd, 0, []string{"String"}},
	"processor_sig":  {colProcessorSig, 0, []string{"String"}},
}

// frameHeader reads the names and types of the result and checks each against
// the frame column it names.
func frameHeader(r *reader) ([]frameColumn, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(frameColumnSpecs)) {
		return nil, fmt.Errorf("frames: %d columns, a frame has %d", n, len(frameColumnSpecs))
	}
	cols := make([]frameColumn, n)
	names := map[string]bool{}
	for i := range cols {
		if cols[i].name, err = r.str(); err != nil {
			return nil, err
		}
		if names[cols[i].name] {
			return nil, fmt.Errorf("frames: column %s twice", cols[i].name)
		}
		names[cols[i].name] = true
	}
	for i := range cols {
		typ, err := r.str()
		if err != nil {
			return nil, err
		}
		if err := cols[i].setType(strings.TrimSpace(typ)); err != nil {
			return nil, fmt.Errorf("frames: column %s: %w", cols[i].name, err)
		}
	}
	return cols, nil
}

func (c *frameColumn) setType(typ string) error {
	spec, ok := frameColumnSpecs[c.name]
	if !ok {
		return fmt.Errorf("not a frame column")
	}
	c.kind, c.field = spec.kind, spec.field
	switch spec.kind {
	case colTime:
		return c.setTime(typ)
	case colString, colMasks:
		c.seen = map[string]string{}
	}
	for _, t := range spec.types {
		if typ == t {
			return nil
		}
	}
	return fmt.Errorf("type %s, want %s", typ, strings.Join(spec.types, " or "))
}

func (c *frameColumn) setTime(typ string) error {
	name, args, ok := splitType(typ)
	if !ok || name != "DateTime64" || len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("type %s, want DateTime64(P[, tz])", typ)
	}
	p, err := strconv.Atoi(strings.TrimSpace(args[0]))
	if err != nil || p < 0 || p > 9 {
		return fmt.Errorf("DateTime64 precision %q", args[0])
	}
	c.div, c.scale = 1, 1
	for range p {
		c.div *= 10
	}
	for range 9 - p {
		c.scale *= 10
	}
	return nil
}

func (c *frameColumn) read(r *reader, w *frameRow) error {
	switch c.kind {
	case colString:
		p, err := r.bytes()
		if err != nil {
			return err
		}
		*w.stringField(c.field) = c.intern(p)
	case colBytes:
		p, err := r.bytes()
		if err != nil {
			return err
		}
		w.bytes[c.field] = p
	case colStart, colEnd, colProcessorSig:
		p, err := r.bytes()
		if err != nil {
			return err
		}
		switch c.kind {
		case colStart:
			w.start = p
		case colEnd:
			w.end = p
		default:
			w.psig = p
		}
	case colSeq, colChannel:
		p, err := r.take(8)
		if err != nil {
			return err
		}
		if c.kind == colSeq {
			w.f.Seq = int64(le.Uint64(p))
		} else {
			w.f.Channel = int64(le.Uint64(p))
		}
	case colFragment:
		p, err := r.take(4)
		if err != nil {
			return err
		}
		w.f.Fragment = int32(le.Uint32(p))
	case colBool:
		p, err := r.take(1)
		if err != nil {
			return err
		}
		w.f.Final = p[0] != 0
	case colTime:
		p, err := r.take(8)
		if err != nil {
			return err
		}
		v := int64(le.Uint64(p))
		sec, frac := v/c.div, v%c.div
		if frac < 0 {
			sec, frac = sec-1, frac+c.div
		}
		w.f.TS = time.Unix(sec, frac*c.scale).UTC()
	case colMasks:
		return c.readMasks(r, w)
	}
	return nil
}

func (w *frameRow) stringField(i int) *string {
	switch i {
	case strSessionID:
		return &w.f.SessionID
	case strKind:
		return &w.f.Kind
	case strGatewayID:
		return &w.f.GatewayID
	case strDenial:
		return &w.f.Denial
	case strDirection:
		return (*string)(&w.f.Direction)
	}
	return (*string)(&w.f.Protocol)
}

func (c *frameColumn) readMasks(r *reader, w *frameRow) error {
	n, err := r.uvarint()
	if err != nil {
		return err
	}
	// An entry takes at least nine bytes (an empty key and its value).
	if n > uint64(len(r.b)-r.off)/9 {
		return errShort
	}
	if n == 0 {
		return nil
	}
	m := make(map[string]int64, n)
	for range n {
		k, err := r.bytes()
		if err != nil {
			return err
		}
		v, err := r.take(8)
		if err != nil {
			return err
		}
		m[c.intern(k)] = int64(le.Uint64(v))
	}
	w.f.Masks = m
	return nil
}

// intern returns p as a string shared with the rows before it that held the same
// value (a session's id, directions, kinds, gateway), up to internMax values a
// column; past that every value is its own string.
func (c *frameColumn) intern(p []byte) string {
	const internMax = 64
	if s, ok := c.seen[string(p)]; ok {
		return s
	}
	s := string(p)
	if c.seen != nil {
		c.seen[s] = s
		if len(c.seen) > internMax {
			c.seen = nil
		}
	}
	return s
}

// bytes reads a String value as a slice of the result.
func (r *reader) bytes() ([]byte, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.off) {
		return nil, errShort
	}
	return r.take(int(n))
}
