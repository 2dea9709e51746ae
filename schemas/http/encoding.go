package http

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"

	"github.com/tapline/tapline/schemas"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Masking sees compressed bodies decoded. The stored body is the decoded,
// masked content; the head says so (DecodedHeader) and no longer carries
// Content-Encoding, so replay and HAR read it as plain. The raw topic keeps
// the original bytes, so the chain of what crossed the wire stays verifiable.
const (
	// DecodedHeader replaces Content-Encoding in a stored head whose body
	// masking decoded; its value is the original encoding.
	DecodedHeader = "X-Tapline-Decoded-From"
	// MaxDecodedBody bounds what one body may expand to (zip bombs); the
	// rest is dropped from durable storage and counted as MaskDecodeCut.
	MaxDecodedBody = 16 << 20
	// MaxEncodedBody bounds the compressed bytes of a streamed body kept in
	// the session's mask state to decode across frames.
	MaxEncodedBody = 256 << 10
)

// Mask counts of decoding.
const (
	MaskDecoded     = "http_decoded"      // a head whose body is stored decoded
	MaskDecodeCut   = "http_decode_cut"   // a body cut at MaxDecodedBody or MaxEncodedBody
	MaskDecodeError = "http_decode_error" // a body that did not decode to its end
)

// decodable reports whether masking decodes bodies of this Content-Encoding.
func decodable(enc string) bool {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "gzip", "x-gzip", "deflate", "br", "zstd":
		return true
	}
	return false
}

// decodeBody returns up to limit bytes of b decoded from enc, whether the
// output was cut at limit, and whether b did not decode to its end (a
// stream still open counts as that: the caller knows when a body ends).
// What decoded before an error is returned, so it is masked, not lost.
func decodeBody(b []byte, enc string, limit int64) (out []byte, cut, broken bool) {
	r, err := decoder(b, enc)
	if err != nil {
		return nil, false, true
	}
	defer r.Close()
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, limit+1))
	if n > limit {
		return buf.Bytes()[:limit], true, false
	}
	return buf.Bytes(), false, err != nil
}

func decoder(b []byte, enc string) (io.ReadCloser, error) {
	src := bytes.NewReader(b)
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "gzip", "x-gzip":
		return gzip.NewReader(src)
	case "deflate":
		// RFC 9110 says zlib; some servers send raw deflate.
		if r, err := zlib.NewReader(src); err == nil {
			return r, nil
		}
		return flate.NewReader(bytes.NewReader(b)), nil
	case "br":
		return io.NopCloser(brotli.NewReader(src)), nil
	case "zstd":
		d, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxDecodedBody*2))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, io.ErrUnexpectedEOF
}

// markDecoded rewrites a masked head whose body will be stored decoded:
// Content-Encoding becomes DecodedHeader, so a reader of the stored session
// does not try to decode plain bytes.
func (s *MaskState) markDecoded(f *schemas.Frame, head []byte, r MaskRules) []byte {
	if !s.Bodies[bodyKey(f)].decoded() {
		return head
	}
	h, err := DecodeHead(head)
	if err != nil {
		return head
	}
	for i := range h.Headers {
		if strings.EqualFold(h.Headers[i].Name, "Content-Encoding") {
			h.Headers[i].Name = DecodedHeader
		}
	}
	r.count(MaskDecoded)
	return EncodeHead(h)
}

// maskDecoded masks a body frame of a compressed body on its decoded
// content. A frame holding the whole body is decoded alone; a streamed
// body's frames are decoded together and each frame stores what its bytes
// added.
func (s *MaskState) maskDecoded(f *schemas.Frame, b BodyInfo, r MaskRules) []byte {
	r.count(MaskDecoded)
	if f.Fragment == 0 && f.Final && b.Length == int64(len(f.Payload)) {
		out, cut, broken := decodeBody(f.Payload, b.Encoding, MaxDecodedBody)
		r.flag(cut, broken)
		return MaskBody(out, b.Type, "", r)
	}
	k := bodyKey(f)
	if b.Cut {
		return []byte{}
	}
	if len(b.Raw)+len(f.Payload) > MaxEncodedBody {
		r.flag(true, false)
		s.Bodies[k] = BodyInfo{Type: b.Type, Encoding: b.Encoding, Length: b.Length, Cut: true}
		return []byte{}
	}
	b.Raw = append(b.Raw, f.Payload...)
	out, cut, open := decodeBody(b.Raw, b.Encoding, MaxDecodedBody)
	if int64(len(out)) < b.Emitted {
		b.Emitted = int64(len(out))
	}
	end := int64(len(out))
	if open && !cut {
		end = holdBack(out, b.Emitted)
	}
	part := out[b.Emitted:end]
	b.Emitted = end
	if cut {
		r.flag(true, false)
		b.Raw, b.Cut = nil, true
	}
	s.Bodies[k] = b
	return MaskPart(part, b.Type, "", r)
}

func (r *MaskRules) flag(cut, broken bool) {
	if cut {
		r.count(MaskDecodeCut)
	}
	if broken {
		r.count(MaskDecodeError)
	}
}

// holdBack is where to stop storing a still-open decoded stream: after its
// last line, so a secret whose bytes arrive in two frames is masked whole
// by the next one. A line longer than MaxHeldLine is stored anyway.
func holdBack(out []byte, from int64) int64 {
	i := bytes.LastIndexByte(out[from:], '\n')
	if i < 0 && int64(len(out))-from <= MaxHeldLine {
		return from
	}
	if i < 0 {
		return int64(len(out))
	}
	return from + int64(i) + 1
}

// MaxHeldLine bounds the decoded bytes held back waiting for a line's end.
const MaxHeldLine = 64 << 10
