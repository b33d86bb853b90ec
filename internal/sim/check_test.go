package sim

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkit/bearer"
)

// The invariants, checked after (and some during) every schedule:
//
//  1. The server never saw a refresh token presented twice, except when the
//     earlier presentation's outcome was lost before the later one was sent:
//     a lost or garbled answer, a client that stopped waiting or crashed, or
//     a rotation read and never saved by a process that then died or closed
//     with Close reporting the failed save (docs/refresh.md: the next
//     process finds the mark and sends the token again). Counted apart.
//  2. Once every living Source is closed, the store holds the newest refresh
//     token any Source read from an answer, unless the Source that read it
//     died before saving it, or its Close returned an error (counted apart).
//     The store never goes back to an older token.
//  3. No caller (nor the API, for requests through the Transport) got an
//     access token that had expired when it was handed out: by the Source's
//     own clock always, and by the server's clock unless that Source's
//     clock was behind the one that computed the token's expiry.
//  4. Close returns, within its bound; nothing a Source started does I/O
//     after its Close returned, and no goroutine outlives Close.
//
// And every call returns by its deadline or cancellation (world.call).

// checkHandout checks that it, handed out by p now, had not expired (3).
// srcExpiry is the expiry as the Source saw it; zero means reconstruct it
// from who received the token and that process's clock then.
//
// By the server's clock: a Source hands out a token only while its clock
// shows less than Expiry minus the leeway, and Expiry is the receiving
// process's clock at receipt plus expires_in. The answer takes at most
// 300 ms from the server to the client and the leeway is at least 2 s (Config.Leeway
// is drawn from 2 s, the default is a tenth of a lifetime of at least 60 s),
// so a token handed out by a clock not behind the receiver's has time left
// on the server's clock. A clock behind it (a skew, a jump back) may hand out
// a token the server considers expired; such handouts are counted apart.
func (w *world) checkHandout(p *proc, who string, it *issued, srcExpiry time.Time) {
	if p.isCrashed() {
		return // the callers of a dead process are dead too
	}
	now := time.Now()
	d := now.Sub(w.t0)
	oq := p.plan.offset(d)
	w.srv.mu.Lock()
	receiver, receivedAt, expires := it.receiver, it.receivedAt, it.expires()
	w.srv.mu.Unlock()
	op := time.Duration(0)
	if receiver >= 0 {
		op = w.procs[receiver].plan.offset(receivedAt.Sub(w.t0))
		if srcExpiry.IsZero() {
			srcExpiry = receivedAt.Add(op).Add(it.said)
		}
	} else if srcExpiry.IsZero() {
		srcExpiry = expires
	}
	srcNow := now.Add(oq)
	if !srcNow.Before(srcExpiry) {
		w.failf("(3) %s: p%d handed out %s, expired by its own clock (now %v, expiry %v)",
			who, p.id, it.at, fmtDur(srcNow.Sub(w.t0)), fmtDur(srcExpiry.Sub(w.t0)))
	}
	w.mu.Lock()
	w.st.handouts++
	w.mu.Unlock()
	if now.Before(expires) {
		return
	}
	if oq < op {
		w.mu.Lock()
		w.st.skewedHandouts++
		w.mu.Unlock()
		w.logf("%s: %s expired on the server's clock, handed out by a clock %v behind its receiver's", who, it.at, op-oq)
		return
	}
	w.failf("(3) %s: p%d handed out %s, expired by the server's clock %v ago (p%d's clock offset %v, the receiver p%d's %v)",
		who, p.id, it.at, fmtDur(now.Sub(expires)), p.id, oq, receiver, op)
}

// wrote records a write that landed, and checks that the store never goes
// back to an older token (2).
func (w *world) wrote(p *proc, tok *bearer.Token) {
	idx := rtIndex(tok.RefreshToken)
	w.mu.Lock()
	last := w.lastWrite
	if idx > last {
		w.lastWrite = idx
	}
	if w.curTok == nil || w.curTok.RefreshToken != tok.RefreshToken {
		w.prevTok, w.curTok = w.curTok, tok
	}
	w.lastWriter = p.id
	w.mu.Unlock()
	w.srv.mu.Lock()
	if it := w.srv.byRT[tok.RefreshToken]; it != nil {
		it.saved = true
	}
	w.srv.mu.Unlock()
	w.logf("p%d saved %s", p.id, tok.RefreshToken)
	if idx < last {
		w.failf("(2) p%d saved %s over %s: the store went back", p.id, tok.RefreshToken, "rt-"+strconv.Itoa(last))
	}
}

func rtIndex(rt string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(rt, "rt-"))
	if err != nil {
		return -1
	}
	return n
}

// checkStore checks (2) once every living process has closed.
func (w *world) checkStore() {
	s := w.srv
	s.mu.Lock()
	newest := s.chain[0]
	for _, it := range s.chain {
		if it.delivered {
			newest = it
		}
	}
	s.mu.Unlock()
	stored, err := w.loadBack()
	if err != nil {
		w.failf("(2) the store cannot be read at the end: %v", err)
		return
	}
	if stored.RefreshToken == newest.rt {
		return
	}
	if newest.receiver < 0 {
		w.failf("(2) the store holds %s; nothing was read from an answer, so it should hold %s", stored.RefreshToken, newest.rt)
		return
	}
	p := w.procs[newest.receiver]
	p.mu.Lock()
	crashed, closeErr := p.crashed, p.closeErr
	p.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case crashed:
		w.st.lostToCrash++
	case closeErr != nil:
		w.st.lostWithCloseError++
	default:
		w.mu.Unlock()
		w.failf("(2) the store holds %s, but p%d read %s from an answer at %v and its Close returned nil",
			stored.RefreshToken, p.id, newest.rt, fmtDur(newest.receivedAt.Sub(w.t0)))
		w.mu.Lock()
	}
}

// checkServer checks (1) from the server's record of every presentation,
// and gathers its figures.
func (w *world) checkServer() {
	s := w.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	byRT := map[string][]*presentation{}
	for _, pr := range s.pres {
		if pr.known == nil {
			w.failf("(1) p%d presented %q, which the server never issued", pr.proc, pr.rt)
			continue
		}
		byRT[pr.rt] = append(byRT[pr.rt], pr)
	}
	var excused []string
	for _, it := range s.chain {
		c := it.spent
		if c == nil {
			continue
		}
		for _, y := range byRT[it.rt] {
			if y == c {
				continue
			}
			// The one sent later is a failure unless the earlier one's
			// outcome was lost by then: only then could its sender think
			// the token might be unspent.
			first, second := c, y
			if y.sentAt.Before(c.sentAt) {
				first, second = y, c
			}
			lost, lostAt := first.lost, first.lostAt
			if lost == "" && first.consumed != nil && !first.consumed.saved {
				// Read, never saved, and the reader is gone: it died, or
				// closed with its save failing (Close said so). Nobody
				// left knows the new token; the next process finds the
				// mark and sends the old one again (docs/refresh.md).
				lost, lostAt = w.procs[first.proc].gone()
			}
			if lost == "" || lostAt.After(second.sentAt) {
				state := "its answer was delivered"
				switch {
				case lost != "":
					state = fmt.Sprintf("its outcome was lost only at %v (%s)", fmtDur(lostAt.Sub(w.t0)), lost)
				case !first.delivered:
					state = "its answer was never delivered nor lost"
				}
				w.mu.Lock()
				w.failures = append(w.failures, fmt.Sprintf(
					"(1) %s presented twice: p%d request #%d sent at %v, after p%d request #%d sent at %v, whose outcome was not lost then: %s",
					it.rt, second.proc, second.n, fmtDur(second.sentAt.Sub(w.t0)), first.proc, first.n, fmtDur(first.sentAt.Sub(w.t0)), state))
				w.mu.Unlock()
				continue
			}
			excused = append(excused, lossClass(lost))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, pr := range s.pres {
		w.st.presentations++
		if pr.consumed != nil {
			w.st.rotations++
		}
	}
	for _, e := range excused {
		w.st.resent[e]++
	}
	if s.revoked != nil {
		w.st.revoked++
	}
}

func lossClass(why string) string {
	switch {
	case strings.HasPrefix(why, "answer lost"):
		return "lost answer"
	case strings.HasPrefix(why, "answer garbled"):
		return "garbled answer"
	case strings.HasPrefix(why, "the client crashed before saving"):
		return "crash before save"
	case strings.HasPrefix(why, "the client's saves failed until Close"):
		return "save failed until Close"
	case strings.HasPrefix(why, "the client crashed"):
		return "crash after send"
	case strings.HasPrefix(why, "the client stopped waiting"):
		return "client gave up (timeout)"
	}
	return why
}

// checkGoroutines checks (4): once every process is closed and the
// simulator's own goroutines have ended, the bubble holds only this
// goroutine and the bubble's root.
func (w *world) checkGoroutines() {
	selfID, bubble, ok := header(stacks(false))
	if !ok || bubble == "" {
		w.failf("cannot find this goroutine's bubble")
		return
	}
	var left []string
	for _, g := range strings.Split(stacks(true), "\n\n") {
		id, b, _ := header(g)
		if b != bubble || id == selfID ||
			strings.Contains(g, "testing/synctest.testingSynctestTest(") || strings.Contains(g, "internal/synctest.Run(") {
			continue
		}
		left = append(left, g)
	}
	if len(left) > 0 {
		w.failf("(4) %d goroutines outlive Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// header reads a goroutine's id and bubble from its stack's first line,
// "goroutine 12 [chan receive (durable), synctest bubble 3]:".
func header(g string) (id, bubble string, ok bool) {
	line, _, _ := strings.Cut(g, "\n")
	rest, ok := strings.CutPrefix(line, "goroutine ")
	if !ok {
		return "", "", false
	}
	id, rest, _ = strings.Cut(rest, " ")
	if _, after, found := strings.Cut(rest, "synctest bubble "); found {
		bubble = strings.TrimRight(after, "],: ")
		if i := strings.IndexAny(bubble, ",]"); i >= 0 {
			bubble = bubble[:i]
		}
	}
	return id, bubble, true
}

func stacks(all bool) string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, all)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// stats are a schedule's figures, summed over a run.
type stats struct {
	schedules          int
	byStore            [3]int
	presentations      int
	rotations          int
	resent             map[string]int // re-sends after a lost outcome, by cause
	revoked            int            // schedules whose family was revoked
	crashes            int
	lostToCrash        int // (2) newest rotation lost: its reader died before saving
	lostWithCloseError int // (2) newest rotation lost: its save failed until Close, which said so
	closes             int
	closeErrors        int
	maxClose           time.Duration
	handouts           int
	skewedHandouts     int
	lockRemovals       int
}

func (a *stats) add(b stats) {
	a.schedules += b.schedules
	for i := range a.byStore {
		a.byStore[i] += b.byStore[i]
	}
	a.presentations += b.presentations
	a.rotations += b.rotations
	if a.resent == nil {
		a.resent = map[string]int{}
	}
	for k, v := range b.resent {
		a.resent[k] += v
	}
	a.revoked += b.revoked
	a.crashes += b.crashes
	a.lostToCrash += b.lostToCrash
	a.lostWithCloseError += b.lostWithCloseError
	a.closes += b.closes
	a.closeErrors += b.closeErrors
	a.maxClose = max(a.maxClose, b.maxClose)
	a.handouts += b.handouts
	a.skewedHandouts += b.skewedHandouts
	a.lockRemovals += b.lockRemovals
}

func (a *stats) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d schedules (memory %d, file %d, redis %d)\n", a.schedules, a.byStore[memoryStore], a.byStore[fileStore], a.byStore[redisStore])
	fmt.Fprintf(&b, "  token requests processed %d, rotations %d\n", a.presentations, a.rotations)
	keys := make([]string, 0, len(a.resent))
	for k := range a.resent {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintf(&b, "  (1) refresh tokens re-sent after their outcome was lost:")
	if len(keys) == 0 {
		b.WriteString(" none")
	}
	for _, k := range keys {
		fmt.Fprintf(&b, " %s %d;", k, a.resent[k])
	}
	fmt.Fprintf(&b, "\n      families revoked (all by such re-sends) in %d schedules\n", a.revoked)
	fmt.Fprintf(&b, "  (2) crashes %d; newest rotation lost to a crash before its save %d, with Close reporting the failed save %d\n",
		a.crashes, a.lostToCrash, a.lostWithCloseError)
	fmt.Fprintf(&b, "  (3) tokens handed out %d; expired on the server's clock behind a clock that was set back %d\n", a.handouts, a.skewedHandouts)
	fmt.Fprintf(&b, "  (4) Close calls %d (%d returned an error), longest %v\n", a.closes, a.closeErrors, a.maxClose)
	if a.lockRemovals > 0 {
		fmt.Fprintf(&b, "  lock files removed %d\n", a.lockRemovals)
	}
	return b.String()
}
