package schemas

import (
	"fmt"
	"slices"
)

// Commands are encoded and decoded by hand for the reason frames are
// (frame_encode.go, frame_decode.go): the processors write one per statement
// and the sinks read every one, and goavro's map-based walk was most of the
// sink's decoding cost once frames went direct. The output is the Avro binary
// encoding of command.avsc; tests compare both directions with goavro. Any
// change to command.avsc must be mirrored here.

// appendCommand returns header followed by c's Avro binary body.
func appendCommand(header []byte, c *Command) ([]byte, error) {
	proto := slices.Index(protocolSymbols, c.Protocol)
	if proto < 0 {
		return nil, fmt.Errorf("protocol %q is not one of %v", c.Protocol, protocolSymbols)
	}
	n := len(header) + 96 + len(c.SessionID) + len(c.Target) + len(c.Subject) + len(c.Kind) +
		len(c.Text) + len(c.Status) + len(c.Error)
	for _, p := range c.Params {
		n += len(p) + binary64Max
	}
	for k := range c.Masks {
		n += len(k) + 2*binary64Max
	}
	buf := append(make([]byte, 0, n), header...)
	buf = appendString(buf, c.SessionID)
	buf = appendLong(buf, c.CommandSeq)
	buf = appendLong(buf, c.SeqEnd)
	buf = appendLong(buf, int64(proto))
	buf = appendString(buf, c.Target)
	buf = appendString(buf, c.Subject)
	buf = appendLong(buf, c.Channel)
	buf = appendString(buf, c.Kind)
	buf = appendString(buf, c.Text)
	buf = appendStrings(buf, c.Params)
	buf = appendTimeMicros(buf, c.StartedAt)
	buf = appendTimeMicros(buf, c.EndedAt)
	buf = appendString(buf, c.Status)
	buf = appendString(buf, c.Error)
	buf = appendLong(buf, c.Rows)
	if c.ExitStatus == nil {
		buf = appendLong(buf, unionNull)
	} else {
		buf = appendInt(appendLong(buf, unionValue), *c.ExitStatus)
	}
	return appendMap(buf, c.Masks, appendLong), nil
}

// decodeCommandBody reads a body written with the current command schema.
func decodeCommandBody(body []byte) (Command, error) {
	d := frameDecoder{b: body}
	c := Command{
		SessionID:  d.string(),
		CommandSeq: d.long(),
		SeqEnd:     d.long(),
		Protocol:   enumSymbol(&d, protocolSymbols),
		Target:     d.string(),
		Subject:    d.string(),
		Channel:    d.long(),
		Kind:       d.string(),
		Text:       d.string(),
		Params:     d.strings(),
		StartedAt:  d.timeMicros(),
		EndedAt:    d.timeMicros(),
		Status:     d.string(),
		Error:      d.string(),
		Rows:       d.long(),
	}
	if d.present() {
		v := d.int()
		c.ExitStatus = &v
	}
	c.Masks = d.longMap()
	if d.err != nil {
		return Command{}, d.err
	}
	if len(d.b) != 0 {
		return Command{}, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return c, nil
}
