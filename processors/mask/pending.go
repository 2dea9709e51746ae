package mask

import "bytes"

// PendingBytes bounds Pending: a secret still being written is looked for in the
// last PendingBytes of a stream (the window the SSH conversation keeps, so that
// whatever is held back is also what the next frame is scanned with).
const PendingBytes = 2048

// numberRun bounds how far back a number written in groups (a card, an IBAN, a
// phone number with its separators) is followed: 34 characters of an IBAN in
// groups of four take 42 bytes.
const numberRun = 48

// Pending is how many bytes at the end of b may be the start of a secret that
// more bytes would complete, so that a frame holding them waits for the next one
// of its stream. The rule covers every detector and regex rule at once by the
// shapes their matches take, erring on the side of holding:
//
//   - secrets do not span line ends (a private key block is masked to the end of
//     each frame while it is open): only the last line counts;
//   - the trailing run of token bytes (anything but spaces, quotes, brackets and
//     separators): a token, a key, an address, a JWT, a password value or a
//     number in progress;
//   - a trailing number in groups: digits, capitals and their separators (space,
//     dash, dot, parentheses, plus) after the last lower-case letter, if it holds
//     a digit or ends in the '(' or '+' that starts a phone number: "4111 1111 ",
//     "(415) 55", "DE89 3704 ", "call (";
//   - an open quote ('…, "…, $$…) on the line: a quoted password may hold spaces.
//
// The result is bounded by PendingBytes.
func Pending(b []byte) int {
	lo := max(0, len(b)-PendingBytes)
	line := b[lo:]
	if i := bytes.LastIndexAny(line, "\r\n"); i >= 0 {
		line = line[i+1:]
	}
	n := len(line)
	s := n
	for s > 0 && tokenByte(line[s-1]) {
		s--
	}
	j, digit := n, false
	for j > 0 && n-j < numberRun && numberByte(line[j-1]) {
		j--
		digit = digit || isDigit(line[j])
	}
	if digit || (n > 0 && (line[n-1] == '(' || line[n-1] == '+')) {
		s = min(s, j)
	}
	if q := openQuote(line); q >= 0 {
		s = min(s, q)
	}
	return n - s
}

// tokenByte reports whether c can be part of a token, a key, an address or a
// number (see continuation).
func tokenByte(c byte) bool { return !separator[c] }

var separator = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c <= ' ' || c >= 0x7f
	}
	for _, c := range []byte(`"'<>;,&()[]{}|` + "`") {
		t[c] = true
	}
	return t
}()

func numberByte(c byte) bool {
	return isDigit(c) || isUpper(c) || c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '+'
}

// openQuote is where a quote left open at the end of line starts ('…, "…, or a
// dollar quote $$…), or -1.
func openQuote(line []byte) int {
	open, at := byte(0), -1
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case open == '$':
			if c == '$' && i+1 < len(line) && line[i+1] == '$' {
				open, i = 0, i+1
			}
		case open != 0:
			if c == open {
				open = 0
			}
		case c == '\'' || c == '"':
			open, at = c, i
		case c == '$' && i+1 < len(line) && line[i+1] == '$':
			open, at, i = '$', i, i+1
		}
	}
	if open == 0 {
		return -1
	}
	return at
}
