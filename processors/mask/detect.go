package mask

import (
	"bytes"
	"regexp"
	"sort"
	"strings"

	sshproto "github.com/tapline/tapline/schemas/ssh"
)

// Detector names, also the keys of Frame.Masks and Command.Masks for what they find.
const (
	Email       = "email"
	Card        = "card"
	NationalID  = "national_id"
	IBAN        = "iban"
	Phone       = "phone"
	JWT         = "jwt"
	CloudKey    = "cloud_key"
	APIToken    = "api_token"
	PrivateKey  = "private_key"
	SQLPassword = "sql_password"
	Password    = "password"
)

// Other mask types (not detectors): what a rule, rather than a pattern, masked.
const (
	Column      = "column"                 // a DataRow value by its column name
	Param       = "param"                  // a Bind parameter by position or by the column it is compared with
	Header      = "http_header"            // an HTTP header value
	JSONField   = "json_field"             // a JSON value by its field name
	TypedSecret = sshproto.MaskTypedSecret // keystrokes typed while the terminal does not echo
	EnvSecret   = sshproto.MaskEnvSecret   // an SSH env request whose name says it holds a secret
	AuthMessage = "auth"                   // a Postgres password or SASL message
)

// Detectors lists every built-in detector, in the order they run.
var Detectors = []string{PrivateKey, JWT, CloudKey, APIToken, SQLPassword, Password, Email, IBAN, Card, NationalID, Phone}

// Match is one secret found in a text: bytes [Start, End) are masked.
type Match struct {
	Start, End int
	Type       string
}

type detector struct {
	name string
	// may reports cheaply whether the detector can match at all.
	may func(b []byte) bool
	// find returns the matches in the text.
	find func(t *text) []Match
}

// text is what the detectors read: the bytes, the same in lower case (ASCII), and
// which of the patterns' literals (hints and anchors) occur in it, found in one pass.
type text struct {
	b     []byte
	lower []byte // made on first use (see Lower)
	seen  []bool // by literal id
}

// Lower is the text in lower case (ASCII), made when a pattern first needs it.
func (t *text) Lower() []byte {
	if t.lower == nil {
		t.lower = asciiLower(t.b)
	}
	return t.lower
}

var builtin = map[string]detector{
	Email:       {Email, hasByte('@'), plain(findEmails)},
	Card:        {Card, digits(13), plain(findCards)},
	NationalID:  {NationalID, maySSN, plain(findSSNs)},
	IBAN:        {IBAN, digits(2), plain(findIBANs)},
	Phone:       {Phone, digits(8), plain(findPhones)},
	JWT:         {JWT, hasString("eyJ"), plain(findJWTs)},
	CloudKey:    {CloudKey, always, multiFinder(CloudKey, cloudKeyPatterns)},
	APIToken:    {APIToken, hasByte('_', '-', '.', ' '), multiFinder(APIToken, apiTokenPatterns)},
	PrivateKey:  {PrivateKey, hasString("PRIVATE KEY"), plain(findPrivateKeys)},
	SQLPassword: {SQLPassword, always, multiFinder(SQLPassword, sqlPasswordPatterns)},
	Password:    {Password, hasByte('=', '@'), multiFinder(Password, passwordPatterns)},
}

func plain(f func([]byte) []Match) func(t *text) []Match {
	return func(t *text) []Match { return f(t.b) }
}

// A pattern masks the first non-empty submatch group it names, or the whole match.
// Regular expressions that start with alternatives or ignore case cannot skip ahead
// on a literal, so patterns carry cheap literal tests: hints (one must occur in the
// lower-cased text for the pattern to run at all) and anchors (the match starts at an
// occurrence of one of them, and the expression runs anchored there).
type pattern struct {
	re      *regexp.Regexp
	groups  []int
	hints   []string
	anchors []string
	hintIDs []int // the hints' and anchors' literal ids (see literals)
}

func pat(expr string, groups ...int) pattern {
	return pattern{re: regexp.MustCompile(expr), groups: groups}
}

// when adds hints: lower-case literals of which one must occur.
func (p pattern) when(hints ...string) pattern { p.hints = hints; return p }

// at compiles a pattern that matches only starting at a (word-initial) occurrence of
// one of the lower-case anchors.
func at(anchors []string, expr string, groups ...int) pattern {
	return pattern{re: regexp.MustCompile(`^(?:` + expr + `)`), groups: groups, anchors: anchors}
}

var cloudKeyPatterns = []pattern{
	pat(`\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b`).when("akia", "asia", "abia", "acca"),                                                                // AWS access key id
	pat(`(?i)(?:aws_?secret_?access_?key|aws_?secret_?key|secretaccesskey)["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})\b`, 1).when("secret"),                // AWS secret key
	pat(`\bAIza[0-9A-Za-z_\-]{35}\b`).when("aiza"),                                                                                                     // Google API key
	pat(`\bya29\.[0-9A-Za-z_\-]{20,}`).when("ya29."),                                                                                                   // Google OAuth access token
	pat(`(?i)\bAccountKey=([A-Za-z0-9+/]{86}==)`, 1).when("accountkey="),                                                                               // Azure storage account key
	pat(`(?i)\bSharedAccessKey=([A-Za-z0-9+/]{43}=)`, 1).when("sharedaccesskey="),                                                                      // Azure Service Bus / Event Hubs
	pat(`(?i)[?&]sig=([A-Za-z0-9%+/=]{30,})`, 1).when("sig="),                                                                                          // Azure SAS signature
	pat(`(?i)(?:client_?secret|azure_?client_?secret)["']?\s*[:=]\s*["']?([A-Za-z0-9_~.\-]{34,40})\b`, 1).when("secret"),                               // Azure AD client secret
	pat(`"private_key_id"\s*:\s*"([0-9a-f]{40})"`, 1).when("private_key_id"),                                                                           // GCP service account key id
	pat(`(?i)(?:aliyun|alibaba)[_-]?(?:access[_-]?)?key[_-]?secret["']?\s*[:=]\s*["']?([A-Za-z0-9]{30})\b`, 1).when("aliyun", "alibaba"),               // Alibaba Cloud secret
	pat(`\bdop_v1_[a-f0-9]{64}\b`).when("dop_v1_"),                                                                                                     // DigitalOcean personal token
	pat(`\bLTAI[A-Za-z0-9]{12,20}\b`).when("ltai"),                                                                                                     // Alibaba access key id
	pat(`(?i)\b(?:x-goog-api-key|x-amz-security-token)["']?\s*[:=]\s*["']?([A-Za-z0-9/+=_\-]{20,})`, 1).when("x-goog-api-key", "x-amz-security-token"), // keys in headers
	pat(`(?i)(?:aws_?session_?token|securitytoken)["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{100,})`, 1).when("token"),                                        // AWS session token
	pat(`(?i)\b(?:access[_-]?key[_-]?secret|secret[_-]?access[_-]?key)["']?\s*[:=]\s*["']?([A-Za-z0-9/+=_\-]{20,})["']?`, 1).when("secret"),            // generic "secret access key"
}

var apiTokenPatterns = []pattern{
	pat(`\bgh[pousr]_[A-Za-z0-9]{36}\b`).when("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), // GitHub
	pat(`\bgithub_pat_[A-Za-z0-9_]{60,90}\b`).when("github_pat_"),                     // GitHub fine-grained
	pat(`\bglpat-[A-Za-z0-9_\-]{20}\b`).when("glpat-"),                                // GitLab
	pat(`\bxox[abposr]-[A-Za-z0-9\-]{10,}`).when("xox"),                               // Slack
	pat(`\b[rs]k_live_[0-9A-Za-z]{24,}\b`).when("k_live_"),                            // Stripe
	pat(`\bnpm_[A-Za-z0-9]{36}\b`).when("npm_"),                                       // npm
	pat(`\bsk-(?:proj-)?[A-Za-z0-9_\-]{32,}\b`).when("sk-"),                           // OpenAI-style
	pat(`\bhvs\.[A-Za-z0-9_\-]{24,}\b`).when("hvs."),                                  // Vault service token
	at([]string{"bearer"}, `(?i)bearer\s+([A-Za-z0-9_\-.=+/]{20,})`, 1),               // bearer tokens quoted in text
}

var sqlPasswordPatterns = []pattern{
	at([]string{"password"}, `(?is)PASSWORD\s+E?'((?:[^']|'')*)'`, 1),
	at([]string{"password"}, `(?is)PASSWORD\s+\$\$(.*?)\$\$`, 1),
	at([]string{"identified"}, `(?is)IDENTIFIED\s+(?:WITH\s+\S+\s+)?BY\s+'((?:[^'\\]|''|\\.)*)'`, 1),
}

var passwordPatterns = []pattern{
	// URLs with credentials: postgres://user:pass@host, https://u:p@h.
	pat(`\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'"]+:([^\s@/'"]+)@`, 1).when("://"),
	// key=value: libpq conninfo, ADO/JDBC strings, env files, CLI flags.
	at([]string{"pass", "pwd"}, `(?i)(?:password|passwd|pwd|pass)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([^\s;&'",$)][^\s;&'",)]*))`, 1, 2, 3),
}

func always([]byte) bool { return true }

// inRegions runs find only over the runs of bytes a number-like secret (card, phone,
// IBAN) can be made of, and only over runs with at least minDigits digits. Their
// expressions have no literal to skip ahead on, so over binary data (an scp of a
// tarball) they would otherwise try every byte. Runs are cut at bytes that are not
// word characters, so \b and the finders' look at the neighbouring byte see the same
// as over the whole text.
func inRegions(minDigits int, find func([]byte) []Match) func([]byte) []Match {
	return func(b []byte) []Match {
		var out []Match
		for i := 0; i < len(b); {
			if !numberish[b[i]] {
				i++
				continue
			}
			start, nd := i, 0
			for ; i < len(b) && numberish[b[i]]; i++ {
				if '0' <= b[i] && b[i] <= '9' {
					nd++
				}
			}
			if nd < minDigits {
				continue
			}
			for _, m := range find(b[start:i]) {
				out = append(out, Match{m.Start + start, m.End + start, m.Type})
			}
		}
		return out
	}
}

// numberish is the bytes of card numbers, phone numbers and IBANs with their
// separators, plus every other word character ('_') so that runs end at a \b.
var numberish = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = isAlnum(byte(c)) || strings.IndexByte("_ -.()+\t\n\r\f\v", byte(c)) >= 0
	}
	return t
}()

func hasByte(cs ...byte) func([]byte) bool {
	return func(b []byte) bool {
		for _, c := range cs {
			if bytes.IndexByte(b, c) >= 0 {
				return true
			}
		}
		return false
	}
}

func hasString(s string) func([]byte) bool {
	return func(b []byte) bool { return bytes.Contains(b, []byte(s)) }
}

// digits reports whether b holds at least n ASCII digits.
func digits(n int) func([]byte) bool {
	return func(b []byte) bool {
		c := 0
		for _, x := range b {
			if '0' <= x && x <= '9' {
				if c++; c >= n {
					return true
				}
			}
		}
		return false
	}
}

func multiFinder(typ string, ps []pattern) func(t *text) []Match {
	for i := range ps {
		for _, l := range append(append([]string(nil), ps[i].hints...), ps[i].anchors...) {
			ps[i].hintIDs = append(ps[i].hintIDs, literals.add(l))
		}
	}
	return func(t *text) []Match {
		var out []Match
		for _, p := range ps {
			if len(p.hintIDs) > 0 && !t.anySeen(p.hintIDs) {
				continue
			}
			b := t.b
			if len(p.anchors) > 0 {
				out = p.anchored(typ, b, t.Lower(), out)
				continue
			}
			for _, loc := range p.re.FindAllSubmatchIndex(b, -1) {
				if m, ok := groupSpan(loc, p.groups); ok {
					out = append(out, Match{m[0], m[1], typ})
				}
			}
		}
		return out
	}
}

// anchored runs an anchored pattern at each word-initial occurrence of its anchors.
func (p pattern) anchored(typ string, b, lower []byte, out []Match) []Match {
	for _, a := range p.anchors {
		for off := 0; ; {
			i := bytes.Index(lower[off:], []byte(a))
			if i < 0 {
				break
			}
			i += off
			off = i + len(a)
			if i > 0 && isWordByte(b[i-1]) {
				continue
			}
			loc := p.re.FindSubmatchIndex(b[i:])
			if loc == nil {
				continue
			}
			if m, ok := groupSpan(loc, p.groups); ok {
				out = append(out, Match{i + m[0], i + m[1], typ})
			}
			// Resume after the match, as FindAll does: otherwise each anchor inside a
			// long match ("pass=pass=pass=…") rescans the rest, quadratic in the payload.
			off = max(off, i+loc[1])
		}
	}
	return out
}

func (t *text) anySeen(ids []int) bool {
	for _, id := range ids {
		if t.seen[id] {
			return true
		}
	}
	return false
}

// literalSet indexes the patterns' lower-case literals by their first two bytes,
// so that one pass over a text tells which occur (instead of a bytes.Contains pass
// per literal, which cost more than all the detectors together).
type literalSet struct {
	lits []string
	// pairs has a bit for every two bytes (either case) that begin a literal: a
	// bitset of 8 KiB stays in the L1 cache, as a bool table would not.
	pairs [1 << 16 / 64]uint64
	// slot[k] is 1 + the index in lists of the literals beginning with the
	// lower-case two bytes k (0: none); a map lookup here cost more than the pass.
	slot  [1 << 16]uint8
	lists [][]int
}

var literals = &literalSet{}

// add registers a literal (two bytes or more) and returns its id.
func (l *literalSet) add(s string) int {
	for id, x := range l.lits {
		if x == s {
			return id
		}
	}
	if len(s) < 2 {
		panic("mask: a hint or anchor must be two bytes or more: " + s)
	}
	id := len(l.lits)
	l.lits = append(l.lits, s)
	k := uint16(s[0])<<8 | uint16(s[1])
	for _, a := range caseVariants(s[0]) {
		for _, b := range caseVariants(s[1]) {
			p := uint16(a)<<8 | uint16(b)
			l.pairs[p/64] |= 1 << (p % 64)
		}
	}
	if l.slot[k] == 0 {
		if len(l.lists) == 255 {
			panic("mask: too many literal prefixes")
		}
		l.lists = append(l.lists, nil)
		l.slot[k] = uint8(len(l.lists))
	}
	l.lists[l.slot[k]-1] = append(l.lists[l.slot[k]-1], id)
	return id
}

func caseVariants(c byte) []byte {
	if 'a' <= c && c <= 'z' {
		return []byte{c, c - 'a' + 'A'}
	}
	return []byte{c}
}

// find marks which literals occur in b, ignoring ASCII case.
func (l *literalSet) find(b []byte, seen []bool) {
	for i := 0; i+1 < len(b); i++ {
		p := uint16(b[i])<<8 | uint16(b[i+1])
		if l.pairs[p/64]&(1<<(p%64)) == 0 {
			continue
		}
		k := uint16(lowerTab[b[i]])<<8 | uint16(lowerTab[b[i+1]])
		for _, id := range l.lists[l.slot[k]-1] {
			if !seen[id] && hasPrefixFold(b[i:], l.lits[id]) {
				seen[id] = true
			}
		}
	}
}

// hasPrefixFold reports whether b begins with the lower-case literal s, ignoring
// ASCII case.
func hasPrefixFold(b []byte, s string) bool {
	if len(b) < len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerTab[b[i]] != s[i] {
			return false
		}
	}
	return true
}

// lowerTab maps a byte to its ASCII lower case.
var lowerTab = func() (t [256]byte) {
	for c := range 256 {
		t[c] = byte(c)
		if 'A' <= c && c <= 'Z' {
			t[c] += 'a' - 'A'
		}
	}
	return t
}()

func isWordByte(c byte) bool { return isAlnum(c) || c == '_' }

// groupSpan picks the first non-empty group named in groups (or the whole match).
func groupSpan(loc []int, groups []int) ([2]int, bool) {
	if len(groups) == 0 || (len(groups) == 1 && groups[0] == 0) {
		return [2]int{loc[0], loc[1]}, loc[1] > loc[0]
	}
	for _, g := range groups {
		if s, e := loc[2*g], loc[2*g+1]; s >= 0 && e > s {
			return [2]int{s, e}, true
		}
	}
	return [2]int{}, false
}

// findCards finds 13 to 19 digits, single spaces or dashes between them, from a
// word start to a word end (as `\b\d(?:[ \-]?\d){12,18}\b` would, the longest
// such run from each start), that pass the Luhn check. Hand-written: the
// expression has no literal to skip ahead on and ran at every digit of the text.
func findCards(b []byte) []Match {
	var out []Match
	prev := byte(0)
	for i := 0; i < len(b); i++ {
		c, p := cls[b[i]], prev
		prev = c
		if c&clsDigit == 0 || p&clsWord != 0 {
			continue
		}
		end, stop := cardEnd(b, i)
		if end < 0 {
			if stop > i {
				// The run ended short of 13 digits: so does every later start in it.
				i, prev = stop-1, cls[b[stop-1]]
			}
			continue
		}
		ds := onlyDigits(b[i:end])
		if !allSame(ds) && luhn(ds) && consistentSeparators(b[i:end]) {
			out = append(out, Match{i, end, Card})
		}
		i, prev = end-1, clsDigit
	}
	return out
}

var jwtRe = regexp.MustCompile(`^eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*`)

// findJWTs tries the JWT expression, anchored, at each "eyJ" (a JSON header in
// base64url): run unanchored over the text it cost a pass of its own.
func findJWTs(b []byte) []Match {
	var out []Match
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte("eyJ"))
		if i < 0 {
			return out
		}
		i += off
		off = i + 3
		if loc := jwtRe.FindIndex(b[i:]); loc != nil {
			out = append(out, Match{i, i + loc[1], JWT})
			off = i + loc[1]
		}
	}
}

// Byte classes, looked up once per byte by the hand-written scanners.
const (
	clsDigit = 1 << iota
	clsUpper
	clsWord // letters, digits, '_'
)

var cls = func() (t [256]byte) {
	for c := range 256 {
		b := byte(c)
		if isDigit(b) {
			t[c] |= clsDigit
		}
		if isUpper(b) {
			t[c] |= clsUpper
		}
		if isWordByte(b) {
			t[c] |= clsWord
		}
	}
	return t
}()

// cardEnd is the end of the longest run of 13 to 19 digits from i (single spaces
// or dashes between them) that ends at a word end; -1 if none. stop is where the
// run of digits ended, when it ended before 19 digits (else i).
func cardEnd(b []byte, i int) (end, stop int) {
	best, nd := -1, 0
	for j := i; j < len(b) && nd < 19; {
		nd++
		j++
		if nd >= 13 && (j == len(b) || !isWordByte(b[j])) {
			best = j
		}
		switch {
		case j < len(b) && isDigit(b[j]):
		case j+1 < len(b) && (b[j] == ' ' || b[j] == '-') && isDigit(b[j+1]):
			j++
		default:
			return best, j
		}
	}
	if nd >= 19 {
		return best, i // capped: a later start may still find a card
	}
	return best, len(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// consistentSeparators rejects runs that mix spaces and dashes ("12-34 56…"), which
// are more often ids or dates than card numbers.
func consistentSeparators(s []byte) bool {
	return !(bytes.IndexByte(s, ' ') >= 0 && bytes.IndexByte(s, '-') >= 0)
}

// Luhn reports whether a digit string passes the Luhn (mod 10) check.
func luhn(ds []byte) bool {
	sum := 0
	double := false
	for i := len(ds) - 1; i >= 0; i-- {
		d := int(ds[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

func onlyDigits(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for _, c := range s {
		if '0' <= c && c <= '9' {
			out = append(out, c)
		}
	}
	return out
}

func allSame(ds []byte) bool {
	for _, c := range ds[1:] {
		if c != ds[0] {
			return false
		}
	}
	return true
}

// emailDomain is the part of an address after the @, matched anchored there.
var emailDomain = regexp.MustCompile(`^(?i)[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,24}\b`)

// findEmails finds addresses from each @: the local part before it, the domain after.
func findEmails(b []byte) []Match {
	var out []Match
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '@')
		if i < 0 {
			return out
		}
		i += off
		off = i + 1
		s := i
		for s > 0 && emailLocal(b[s-1]) {
			s--
		}
		if s == i {
			continue
		}
		// A domain name is at most 253 bytes: bounding the input keeps the anchored
		// expression on its fast path over a large frame.
		if loc := emailDomain.FindIndex(b[i+1 : min(len(b), i+1+254)]); loc != nil {
			out = append(out, Match{s, i + 1 + loc[1], Email})
			off = i + 1 + loc[1]
		}
	}
}

func emailLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// maySSN: findSSNs starts from the dashes, so a text without one has no SSN.
func maySSN(b []byte) bool { return bytes.IndexByte(b, '-') >= 0 }

// findSSNs finds US social security numbers in the dashed form (ddd-dd-dddd, a
// word on its own, not glued to more digits or dashes), skipping numbers the SSA
// never issues (area 000, 666, 900-999; group 00; serial 0000). Hand-written from
// the dashes: an expression had to try every position of the text.
func findSSNs(b []byte) []Match {
	var out []Match
	for i := 0; i+11 <= len(b); {
		k := bytes.IndexByte(b[i+3:len(b)-7], '-')
		if k < 0 {
			break
		}
		s := i + k // the dash is at s+3
		i = s + 1
		if !ssnShape(b[s:s+11]) || (s > 0 && isWordByte(b[s-1])) || (s+11 < len(b) && isWordByte(b[s+11])) {
			continue
		}
		if notDigitAround(b, s, s+11) && validSSN(b[s:s+3], b[s+4:s+6], b[s+7:s+11]) {
			out = append(out, Match{s, s + 11, NationalID})
			i = s + 11
		}
	}
	return out
}

// ssnShape reports whether b (11 bytes) is ddd-dd-dddd.
func ssnShape(b []byte) bool {
	for i, c := range b {
		if i == 3 || i == 6 {
			if c != '-' {
				return false
			}
		} else if !isDigit(c) {
			return false
		}
	}
	return true
}

func validSSN(area, group, serial []byte) bool {
	a := string(area)
	return a != "000" && a != "666" && a[0] != '9' && string(group) != "00" && string(serial) != "0000"
}

// notDigitAround rejects a match glued to more digits or dashes (part of a longer id).
func notDigitAround(b []byte, s, e int) bool {
	isPart := func(c byte) bool { return ('0' <= c && c <= '9') || c == '-' }
	return (s == 0 || !isPart(b[s-1])) && (e == len(b) || !isPart(b[e]))
}

// ibanLength is the IBAN length per country (ISO 13616 registry).
var ibanLength = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
	"BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
	"ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
	"HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
	"LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
	"MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
	"RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

// findIBANs finds IBANs (compact or in groups of four) of a registered country with
// the registered length and a valid ISO 7064 mod-97 check: two capital letters at a
// word start, two digits, then capital letters and digits, single spaces between
// them. Hand-written from the country code: an expression had to try every
// position of the text.
func findIBANs(b []byte) []Match {
	var out []Match
	for i := 0; i+15 <= len(b); i++ {
		if cls[b[i+3]]&clsDigit == 0 {
			i++ // an IBAN starting at i or i+1 needs a digit at i+3
			continue
		}
		if cls[b[i]]&clsUpper == 0 || cls[b[i+1]]&clsUpper == 0 || cls[b[i+2]]&clsDigit == 0 || (i > 0 && cls[b[i-1]]&clsWord != 0) {
			continue
		}
		want, ok := ibanLength[string(b[i:i+2])]
		if !ok {
			continue
		}
		// Take exactly `want` alphanumerics from the start, skipping single spaces.
		n, end := 4, i+4
		for end < len(b) && n < want {
			switch c := b[end]; {
			case isUpper(c) || isDigit(c):
				n++
			case c == ' ' && end+1 < len(b) && (isUpper(b[end+1]) || isDigit(b[end+1])):
			default:
				end = len(b) // not an IBAN's byte: stop short
				continue
			}
			end++
		}
		if n != want || (end < len(b) && isAlnum(b[end])) {
			continue
		}
		if ibanValid(b[i:end]) {
			out = append(out, Match{i, end, IBAN})
			i = end - 1
		}
	}
	return out
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

func isAlnum(c byte) bool {
	return ('0' <= c && c <= '9') || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')
}

// ibanValid runs the ISO 7064 mod 97-10 check: move the first four characters to the
// end, letters become 10..35, and the number mod 97 must be 1.
func ibanValid(s []byte) bool {
	compact := bytes.ReplaceAll(s, []byte(" "), nil)
	if len(compact) < 15 {
		return false
	}
	rearranged := append(append([]byte{}, compact[4:]...), compact[:4]...)
	rem := 0
	for _, c := range rearranged {
		switch {
		case '0' <= c && c <= '9':
			rem = (rem*10 + int(c-'0')) % 97
		case 'A' <= c && c <= 'Z':
			v := int(c-'A') + 10
			rem = (rem*100 + v) % 97
		default:
			return false
		}
	}
	return rem == 1
}

// intlPhoneRe is an international number: +CC and 7-14 more digits in groups.
var intlPhoneRe = regexp.MustCompile(`\+\d{1,3}(?:[ .\-]?\(?\d{1,4}\)?){2,5}`)

func findPhones(b []byte) []Match {
	var out []Match
	for _, loc := range intlPhoneRe.FindAllIndex(b, -1) {
		s, e := loc[0], loc[1]
		if n := len(onlyDigits(b[s:e])); n < 8 || n > 15 || (s > 0 && isAlnum(b[s-1])) {
			continue
		}
		if e < len(b) && isDigit(b[e]) {
			continue
		}
		out = append(out, Match{s, e, Phone})
	}
	return append(out, findNAPhones(b)...)
}

// findNAPhones finds North American numbers: (415) 555-2671, 415-555-2671,
// 415.555.2671 (as `(?:\(\d{3}\)\s?|\b\d{3}[.\-])\d{3}[.\-]\d{4}\b` would).
// Hand-written from the separator before the last four digits: the expression has
// no literal to skip ahead on and ran at every position of the text.
func findNAPhones(b []byte) []Match {
	var out []Match
	for _, sep := range []byte{'-', '.'} {
		for off := 3; off+5 <= len(b); {
			k := bytes.IndexByte(b[off:len(b)-4], sep)
			if k < 0 {
				break
			}
			i := off + k
			off = i + 1
			if m, ok := naPhoneAt(b, i); ok {
				out = append(out, m)
			}
		}
	}
	return out // resolve orders them and drops overlaps
}

// naPhoneAt matches a North American number whose last separator is at i.
func naPhoneAt(b []byte, i int) (Match, bool) {
	if !allDigits(b[i-3:i]) || !allDigits(b[i+1:i+5]) || (i+5 < len(b) && isWordByte(b[i+5])) {
		return Match{}, false
	}
	e := i - 3 // the exchange
	start := -1
	switch {
	case e >= 4 && (b[e-1] == '-' || b[e-1] == '.') && allDigits(b[e-4:e-1]) && (e == 4 || !isWordByte(b[e-5])):
		start = e - 4
	case e >= 5 && b[e-1] == ')' && b[e-5] == '(' && allDigits(b[e-4:e-1]):
		start = e - 5
	case e >= 6 && isSpace(b[e-1]) && b[e-2] == ')' && b[e-6] == '(' && allDigits(b[e-5:e-2]):
		start = e - 6
	}
	return Match{start, i + 5, Phone}, start >= 0
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || ('\t' <= c && c <= '\r') }

var (
	pkBegin = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----`)
	pkEnd   = regexp.MustCompile(`-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----`)
)

// findPrivateKeys masks the body between a BEGIN … PRIVATE KEY marker and its END
// marker (or the end of the text when the block continues elsewhere). The markers stay
// so a reader still sees that a key was there.
func findPrivateKeys(b []byte) []Match {
	var out []Match
	for off := 0; off < len(b); {
		loc := pkBegin.FindIndex(b[off:])
		if loc == nil {
			break
		}
		start := off + loc[1]
		end := len(b)
		if e := pkEnd.FindIndex(b[start:]); e != nil {
			end = start + e[0]
		} else {
			end = beforePartialEnd(b, start)
		}
		if end > start {
			out = append(out, Match{start, end, PrivateKey})
		}
		off = end + 1
	}
	return out
}

// beforePartialEnd is where the body of a key block that runs to the end of b
// stops: before a last line that may be the start of its END marker (the rest of
// the marker comes in the next frame, and must be seen to end the block there).
func beforePartialEnd(b []byte, start int) int {
	i := bytes.LastIndexByte(b[start:], '\n') + 1 + start
	last := b[i:]
	if len(last) > 0 && (bytes.HasPrefix(last, []byte("-----")) || bytes.HasPrefix([]byte("-----"), last)) {
		return i
	}
	return len(b)
}

// scan runs the enabled detectors and extra patterns over b and returns
// non-overlapping matches in text order. Where matches overlap, the detector that comes
// first in Detectors wins (a password inside a URL beats the email-looking
// "pass@host" around it; a private key block beats anything inside it); regex rules
// come after the detectors.
func scan(b []byte, dets []detector, extra []namedPattern) []Match {
	if len(b) == 0 {
		return nil
	}
	t := &text{b: b, seen: make([]bool, len(literals.lits))}
	literals.find(b, t.seen)
	var all []Match
	for _, d := range dets {
		if d.may(b) {
			all = append(all, d.find(t)...)
		}
	}
	for _, p := range extra {
		for _, loc := range p.re.FindAllSubmatchIndex(b, -1) {
			if m, ok := groupSpan(loc, []int{p.group}); ok {
				all = append(all, Match{m[0], m[1], p.typ})
			}
		}
	}
	return resolve(all)
}

// asciiLower lowercases A-Z byte for byte. The copy must have b's length, because
// positions found in it index b; bytes.ToLower would rewrite invalid UTF-8 (any
// binary payload) as U+FFFD and make it longer.
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// resolve keeps, in priority order (the order of all), each match that does not
// overlap one already kept, and returns the kept ones sorted by position.
func resolve(all []Match) []Match {
	if len(all) < 2 {
		return all
	}
	var kept []Match // sorted by Start, non-overlapping
	for _, m := range all {
		i := sort.Search(len(kept), func(i int) bool { return kept[i].Start >= m.Start })
		if i > 0 && kept[i-1].End > m.Start {
			continue
		}
		if i < len(kept) && kept[i].Start < m.End {
			continue
		}
		kept = append(kept, Match{})
		copy(kept[i+1:], kept[i:])
		kept[i] = m
	}
	return kept
}
