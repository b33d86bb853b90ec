package bearer

import (
	"bytes"
	"html"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// What a token endpoint says goes into errors and log lines only through
// excerpt, which withholds every credential the request carried by meaning,
// not by spelling: servers echo requests in error pages raw, HTML-escaped,
// percent-encoded, JSON-escaped, with '+' for a space, mixed within one
// secret, nested (an HTML page quoting a URL), or with invisible characters
// inside.
//
// The text is read in each of those ways (views), each view remembering
// which bytes of the text every byte of it came from. Wherever a view
// shows a whole secret, or any run of secretRun of a secret's characters,
// those bytes of the text are replaced. What remains is checked again in
// every view; if a secret still shows, the excerpt is withheld whole.

const (
	// secretRun is the shortest run of a secret's characters that is
	// withheld: a longer secret shows no 8 characters of itself in a row,
	// so not its first 12 either.
	secretRun = 8
	// minSecret is the length below which a secret is not looked for: it
	// would match ordinary words, and protects nothing.
	minSecret = 4
	// viewDepth is how many decodings in a row a view applies: a JSON
	// string in an HTML page quoting a percent-encoded URL takes three.
	viewDepth = 3
	// excerptScan bounds, in multiples of the excerpt's length, the text
	// that is redacted before the excerpt is cut from it.
	excerptScan = 4
)

// withheld stands in for an excerpt that would still show a credential.
const withheld = "[withheld: the answer echoes a credential]"

// excerpt returns at most max bytes of body's printable text, an ellipsis
// marking a cut, with every secret withheld as described above.
func excerpt(body []byte, secrets []string, max int) string {
	s := printable(string(body))
	r := newRedactor(secrets)
	if r.empty() {
		return cut(s, max)
	}
	if scan := excerptScan*max + 64; len(s) > scan {
		s = s[:runeStart(s, scan)]
	}
	for _, c := range []string{cut(r.scrub(s), max), withheld} {
		if !r.leaks(c) {
			return c
		}
	}
	return ""
}

func clean(s string, secrets []string, max int) string {
	return excerpt([]byte(s), secrets, max)
}

// cut shortens s to at most max bytes on a rune boundary, marking the cut.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:runeStart(s, max)] + "…"
}

// runeStart returns the largest rune boundary of s at or below i.
func runeStart(s string, i int) int {
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}

// printable folds white space and drops what cannot be printed.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// redactor finds the secrets of one request.
type redactor struct {
	whole     []string            // normalised secrets shorter than secretRun
	runs      map[string]struct{} // every secretRun-byte run of the longer ones, normalised
	skeletons []string            // the letters and digits of each secret, if secretRun or more
}

func newRedactor(secrets []string) *redactor {
	r := &redactor{runs: map[string]struct{}{}}
	for _, sec := range secrets {
		n := string(normalize(plain(sec)).b)
		switch {
		case len(n) < minSecret:
			continue
		case len(n) < secretRun:
			r.whole = append(r.whole, n)
		default:
			for i := 0; i+secretRun <= len(n); i++ {
				r.runs[n[i:i+secretRun]] = struct{}{}
			}
		}
		if k := alnum(n); len(k) >= secretRun {
			r.skeletons = append(r.skeletons, k)
		}
	}
	return r
}

func (r *redactor) empty() bool { return len(r.whole) == 0 && len(r.runs) == 0 }

// scrub replaces every byte range of s that some view reads as a secret,
// or a run of one, with the redaction mark.
func (r *redactor) scrub(s string) string {
	hit := make([]bool, len(s))
	found := false
	for _, v := range views(s) {
		found = r.mark(normalize(v), hit) || found
	}
	if !found {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if !hit[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		for i < len(s) && (hit[i] || !utf8.RuneStart(s[i])) {
			i++
		}
		b.WriteString(redacted)
	}
	return b.String()
}

// mark sets hit for the bytes of the text behind every secret v shows,
// widened to whole runes, and reports whether there were any.
func (r *redactor) mark(v view, hit []bool) bool {
	found := false
	set := func(from, to int) { // byte positions in v, inclusive
		found = true
		start, end := int(v.start[from]), int(v.end[to])
		for start > 0 && !utf8.RuneStart(v.src[start]) {
			start--
		}
		for i := start; i < end; i++ {
			hit[i] = true
		}
	}
	for _, w := range r.whole {
		text := string(v.b)
		for off := 0; ; {
			i := strings.Index(text[off:], w)
			if i < 0 {
				break
			}
			set(off+i, off+i+len(w)-1)
			off += i + 1
		}
	}
	for i := 0; i+secretRun <= len(v.b); i++ {
		if _, ok := r.runs[string(v.b[i:i+secretRun])]; ok {
			set(i, i+secretRun-1)
		}
	}
	return found
}

// leaks reports whether any view of s shows a secret, a run of one, or all
// the letters and digits of one in order with only other characters
// between them.
func (r *redactor) leaks(s string) bool {
	hit := make([]bool, len(s))
	for _, v := range views(s) {
		n := normalize(v)
		if r.mark(n, hit) {
			return true
		}
		k := alnum(string(n.b))
		for _, sk := range r.skeletons {
			if strings.Contains(k, sk) {
				return true
			}
		}
	}
	return false
}

// alnum keeps only letters and digits.
func alnum(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return -1
	}, s)
}

// view is a reading of src: b[i] came from src[start[i]:end[i]].
type view struct {
	src        string
	b          []byte
	start, end []int32
}

// plain is the view of s as it is.
func plain(s string) view {
	v := view{src: s, b: []byte(s), start: make([]int32, len(s)), end: make([]int32, len(s))}
	for i := range s {
		v.start[i], v.end[i] = int32(i), int32(i+1)
	}
	return v
}

// add appends p, read from the bytes of v.src between from and to.
func (v *view) add(p []byte, from, to int32) {
	for _, c := range p {
		v.b = append(v.b, c)
		v.start = append(v.start, from)
		v.end = append(v.end, to)
	}
}

// The decodings a view can apply; all of them at once is one more.
const (
	decHTML = 1 << iota
	decPercent
	decJSON
	decAll = decHTML | decPercent | decJSON
)

// views returns every reading of s by up to viewDepth decodings in a row,
// s itself first, each text once.
func views(s string) []view {
	out := []view{plain(s)}
	seen := map[string]bool{s: true}
	level := out
	for range viewDepth {
		var next []view
		for _, v := range level {
			for _, kinds := range []int{decHTML, decPercent, decJSON, decAll} {
				w, ok := decode(v, kinds)
				if !ok || seen[string(w.b)] {
					continue
				}
				seen[string(w.b)] = true
				next = append(next, w)
			}
		}
		out = append(out, next...)
		level = next
	}
	return out
}

// decode returns v with every escape of the given kinds replaced by what it
// stands for, and whether there was one. Each kind begins with a byte of
// its own, so applying several at once is well defined.
func decode(v view, kinds int) (view, bool) {
	w := view{src: v.src}
	changed := false
	for i := 0; i < len(v.b); {
		var out []byte
		n := 0
		switch v.b[i] {
		case '&':
			if kinds&decHTML != 0 {
				out, n = entity(v.b[i:])
			}
		case '%':
			if kinds&decPercent != 0 {
				out, n = percent(v.b[i:])
			}
		case '\\':
			if kinds&decJSON != 0 {
				out, n = jsonEscape(v.b[i:])
			}
		}
		if n == 0 {
			w.add(v.b[i:i+1], v.start[i], v.end[i])
			i++
			continue
		}
		w.add(out, v.start[i], v.end[i+n-1])
		i += n
		changed = true
	}
	return w, changed
}

// entity decodes the HTML character reference at the start of b (named,
// decimal or hex, with or without the semicolon) exactly as
// html.UnescapeString reads it within a longer text, and returns its
// length in b; 0 if there is none.
func entity(b []byte) ([]byte, int) {
	// The window html.UnescapeString needs: the name or the digits, the
	// byte after them and one more; never past the next reference.
	end := 1
	if len(b) > 1 && b[1] == '#' {
		end = 2
		if end < len(b) && b[end]|0x20 == 'x' {
			end++
		}
		for end < len(b) && isHex(b[end]) {
			end++
		}
	} else {
		// The longest entity name has 32 letters.
		for end < len(b) && end < 64 && isAlnum(b[end]) {
			end++
		}
	}
	end = min(end+2, len(b))
	if i := bytes.IndexByte(b[1:end], '&'); i >= 0 {
		end = i + 1
	}
	w := string(b[:end])
	all := html.UnescapeString(w)
	if all == w {
		return nil, 0
	}
	// all is the reference's value followed by the rest of w: the
	// reference ends where that rest begins. A value is never empty.
	for k := 2; k <= len(w); k++ {
		if d := len(all) - len(w[k:]); d > 0 && all[d:] == w[k:] {
			return []byte(all[:d]), k
		}
	}
	return nil, 0
}

// percent decodes %HH, in either case.
func percent(b []byte) ([]byte, int) {
	if len(b) < 3 || !isHex(b[1]) || !isHex(b[2]) {
		return nil, 0
	}
	return []byte{unhex(b[1])<<4 | unhex(b[2])}, 3
}

// jsonEscape decodes a JSON string escape: \uXXXX (a surrogate pair as one
// character, a lone surrogate as U+FFFD, as encoding/json does) and the
// short ones such as \/ and \".
func jsonEscape(b []byte) ([]byte, int) {
	if len(b) < 2 {
		return nil, 0
	}
	if c := shortEscape(b[1]); c != 0 {
		return []byte{c}, 2
	}
	r, ok := hex4(b)
	if !ok {
		return nil, 0
	}
	if utf16.IsSurrogate(r) {
		n := 6
		if r2, ok := hex4(b[6:]); ok {
			if p := utf16.DecodeRune(r, r2); p != utf8.RuneError {
				r, n = p, 12
			}
		}
		if n == 6 {
			r = utf8.RuneError
		}
		return utf8.AppendRune(nil, r), n
	}
	return utf8.AppendRune(nil, r), 6
}

// hex4 reads \uXXXX at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		if !isHex(c) {
			return 0, false
		}
		r = r<<4 | rune(unhex(c))
	}
	return r, true
}

func shortEscape(c byte) byte {
	switch c {
	case '"', '\\', '/':
		return c
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return 0
}

// normalize makes the views of a secret and of a text comparable: white
// space and '+' (a space in a form) become one space, runs of them fold,
// and characters that print as nothing go. Bytes that are not UTF-8 stay.
func normalize(v view) view {
	w := view{src: v.src}
	for i := 0; i < len(v.b); {
		r, n := utf8.DecodeRune(v.b[i:])
		from, to := v.start[i], v.end[i+n-1]
		switch {
		case r == utf8.RuneError && n == 1:
			w.add(v.b[i:i+1], from, to)
		case unicode.IsSpace(r) || r == '+':
			if k := len(w.b) - 1; k >= 0 && w.b[k] == ' ' {
				w.end[k] = max(w.end[k], to)
			} else {
				w.add([]byte{' '}, from, to)
			}
		case unicode.IsPrint(r):
			w.add(v.b[i:i+n], from, to)
		}
		i += n
	}
	return w
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return (c | 0x20) - 'a' + 10
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z'
}
