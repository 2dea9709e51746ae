package postgres

import (
	"strings"

	"github.com/tapline/tapline/schemas/protocol"
)

// MaskFragmentEdge counts the bytes at the end of a fragment that may begin a
// secret the next fragment of the message completes, masked before it is known,
// and the leading bytes of the next fragment that continue them.
const MaskFragmentEdge = "fragment_edge"

// fragWindow is how much of the masked end of a fragment the next one is scanned
// with, as for SSH channel data (mask.PendingBytes).
const fragWindow = 2048

// fragStream is the detectors' state across the fragments of one message: the
// masked end of the fragments so far (the state holds nothing tapline.frames does
// not) and the type of a secret masked up to the very end of the last one, whose
// rest the next fragment may begin with.
type fragStream struct {
	Tail []byte `json:"tail,omitempty"`
	Open string `json:"open,omitempty"`
}

// fragmentText masks b, the bytes of one fragment of a message (in place; the
// result is b or a masked copy), with the detectors, as part of the message's
// byte stream: a secret that begins in an earlier fragment and ends in this one
// is masked here, and so are this fragment's leading bytes that continue a secret
// masked to the end of the previous one. Fragments are not held back (a fragment
// is up to the gateway's fragment limit, 900 KiB, past the hold-back's bounds, and
// holding it would put it in the session's state): instead, the end of a fragment
// that is not the last, as far as it may begin a secret (mask.Pending's rule, at
// most 2 KiB), is masked at once, and the next fragment's bytes that continue it
// are masked as its rest. Over-masking one word at a boundary is the price; no
// byte of a secret split across fragments stays in any of them.
func (c *Conversation) fragmentText(b []byte, final bool, r protocol.MaskRules, counts protocol.Counts) []byte {
	sr, ok := r.(protocol.StreamRules)
	if !ok {
		return r.Text(b, protocol.SameLength, counts)
	}
	st := c.Frag
	if st == nil {
		st = &fragStream{}
	}
	open, lead := st.Open, 0
	if open == MaskFragmentEdge {
		open, lead = "", edgeRest(b)
	}
	res := sr.Stream(st.Tail, b, open, protocol.SameLength, counts)
	out := append([]byte(nil), res.Out...)
	if lead > 0 && unmaskedBytes(out[:lead]) {
		star(out[:lead])
		counts.Add(MaskFragmentEdge, 1)
	}
	if open = res.Open; open == "" && st.Open == MaskFragmentEdge &&
		(lead == len(b) || len(b) == 1 && strings.IndexByte(" -.", b[0]) >= 0) {
		open = MaskFragmentEdge // all of b continues it, or separates two groups of it
	}
	if n := min(res.Pending, len(out)); !final && n > 0 {
		if open == "" {
			open = MaskFragmentEdge
		}
		if edge := out[len(out)-n:]; unmaskedBytes(edge) {
			star(edge)
			counts.Add(MaskFragmentEdge, 1)
		}
	}
	if final {
		c.Frag = nil
		return out
	}
	tail := append(append([]byte(nil), st.Tail...), out[max(len(out)-fragWindow, 0):]...)
	c.Frag = &fragStream{Tail: tail[max(len(tail)-fragWindow, 0):], Open: open}
	return out
}

// edgeRest is the length of b's leading bytes that may continue a secret whose
// start ended the previous fragment (masked there): its run of token bytes
// (anything but spaces, quotes, brackets and separators; an address, a key, a
// token), then further groups of digits and capitals after single separators (a
// card or an IBAN written in groups), at most 48 bytes of them.
func edgeRest(b []byte) int {
	n := 0
	for n < len(b) && !fragSeparator(b[n]) {
		n++
	}
	groups := 0
	for n+1 < len(b) && groups < 48 && strings.IndexByte(" -.", b[n]) >= 0 && groupByte(b[n+1]) {
		start := n
		for n++; n < len(b) && groupByte(b[n]); n++ {
		}
		groups += n - start
	}
	return n
}

func groupByte(ch byte) bool { return ch >= '0' && ch <= '9' || ch >= 'A' && ch <= 'Z' }

// fragSeparator is a byte no secret's middle holds (mask's token bytes are the
// others).
func fragSeparator(ch byte) bool {
	return ch <= ' ' || ch >= 0x7f || strings.IndexByte(`"'<>;,&()[]{}|`+"`", ch) >= 0
}

// unmaskedBytes reports whether b holds a byte that same-length masking changes.
func unmaskedBytes(b []byte) bool {
	for _, ch := range b {
		if ch != '*' && ch != '\n' && ch != '\r' {
			return true
		}
	}
	return false
}
