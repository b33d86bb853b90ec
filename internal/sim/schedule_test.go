package sim

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// generator numbers the way schedules are drawn from seeds. A seed names a
// schedule only for one generator: bump this when drawSchedule or the fault
// draws change, and find the corpus's seeds again (testdata/corpus.txt).
const generator = 1

// A schedule is everything a seed decides: the store, the processes and
// their configuration, the callers, and the faults. Faults that depend on
// how far a process got (its n-th token request, its n-th store operation)
// are drawn when they happen, from a generator keyed by the seed and that
// position, never from a shared one: the order in which goroutines consume
// randomness must not change what they get.
type schedule struct {
	seed uint64
	opts options

	store   storeKind
	horizon time.Duration // callers start and faults happen before it
	storm   float64       // 0 calm .. 1 stormy: scales every fault rate

	ttl  time.Duration // redis: lease lifetime without renewal
	poll time.Duration // redis: wait between attempts to take a held lease

	initialAge time.Duration // how old the stored token is at the start

	procs       []procPlan
	callers     []callerPlan
	windows     []window
	lockRemoval []time.Duration // file store: the lock file is deleted
	revocations []time.Duration // the newest access token is revoked early
}

// options are the fault classes a run enables; a corpus seed names those
// it needs.
type options struct {
	lockRemoval     bool
	longRedisOutage bool
	mutant          string // a defect planted in the world, to show the checks catch it
}

type storeKind int

const (
	memoryStore storeKind = iota
	fileStore
	redisStore
)

func (k storeKind) String() string {
	return [...]string{"memory", "file", "redis"}[k]
}

type crashKind int

const (
	noCrash           crashKind = iota
	crashBeforeSend             // at its n-th token request, before it leaves
	crashAfterConsume           // the server consumed its n-th request; no answer arrives
	crashBeforeSave             // at its n-th save, before it reaches the store
	crashAfterSave              // right after its n-th save reached the store
	crashAtTime                 // at a moment, whatever it was doing
)

func (k crashKind) String() string {
	return [...]string{"none", "before send", "after the server consumed", "before save", "after save", "at a moment"}[k]
}

type crashPlan struct {
	kind crashKind
	n    int           // which request or save, from 1
	at   time.Duration // for crashAtTime
}

func (c crashPlan) String() string {
	switch c.kind {
	case noCrash:
		return "none"
	case crashAtTime:
		return "at " + fmtDur(c.at)
	case crashBeforeSend, crashAfterConsume:
		return fmt.Sprintf("%v token request #%d", c.kind, c.n)
	}
	return fmt.Sprintf("%v #%d", c.kind, c.n)
}

// clockStep sets a process's clock offset from at on.
type clockStep struct{ at, offset time.Duration }

type procPlan struct {
	id             int
	refreshTimeout time.Duration // 0: the default
	leeway         time.Duration // 0: the default
	ahead          time.Duration // 0: the default; negative: off
	maxRetries     int
	closeAt        time.Duration // 0: at the end, plus endGap
	endGap         time.Duration
	crash          crashPlan
	clock          []clockStep
}

// rt is the refresh timeout the Source uses.
func (p *procPlan) rt() time.Duration {
	if p.refreshTimeout > 0 {
		return p.refreshTimeout
	}
	return 30 * time.Second
}

// offset is the process clock's offset at d after the start.
func (p *procPlan) offset(d time.Duration) time.Duration {
	var off time.Duration
	for _, c := range p.clock {
		if d >= c.at {
			off = c.offset
		}
	}
	return off
}

type callKind int

const (
	callToken   callKind = iota // Source.Token
	callGet                     // a GET through Transport
	callPost                    // a POST with a replayable body through Transport
	callRefresh                 // Token, then Refresh with it as if a 401 came back
)

func (k callKind) String() string {
	return [...]string{"Token", "GET", "POST", "Refresh"}[k]
}

type callerPlan struct {
	id, proc int
	kind     callKind
	start    time.Duration
	timeout  time.Duration
	cancel   time.Duration // 0: never cancelled before the timeout
	gap      time.Duration // callRefresh: between Token and Refresh
}

type windowKind int

const (
	writesFail windowKind = iota // Save and CompareAndSwap fail
	outage                       // every store operation fails (redis: renewals too)
	slowStore                    // every store operation takes seconds
)

func (k windowKind) String() string {
	return [...]string{"saves fail", "outage", "slow"}[k]
}

type window struct {
	kind     windowKind
	from, to time.Duration
	proc     int // -1: every process
}

// forever is the end of a window that lasts past every Close.
const forever = time.Duration(1<<63 - 1)

func (w window) covers(proc int, d time.Duration) bool {
	return (w.proc < 0 || w.proc == proc) && d >= w.from && d < w.to
}

// rand returns the generator of one aspect of the schedule.
func (s *schedule) rand(tag string, a, b int) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(tag))
	return rand.New(rand.NewPCG(s.seed, h.Sum64()^uint64(a)<<32^uint64(b)))
}

// between returns a duration in [lo, hi), to the nanosecond, so that
// independent events almost never fall on the same instant.
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// logBetween is between with a log-uniform distribution.
func logBetween(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return time.Duration(float64(lo) * math.Pow(float64(hi)/float64(lo), r.Float64()))
}

func drawSchedule(seed uint64, o options) *schedule {
	s := &schedule{seed: seed, opts: o}
	r := s.rand("schedule", 0, 0)
	switch x := r.IntN(20); {
	case x < 9:
		s.store = memoryStore
	case x < 17:
		s.store = redisStore
	default:
		s.store = fileStore // it really fsyncs: slow, so 15% of the schedules
	}
	s.horizon = between(r, 2*time.Minute, 12*time.Minute)
	s.storm = r.Float64() * r.Float64() * 1.5 // most schedules mild, some stormy
	if s.storm > 1 {
		s.storm = 1
	}
	s.ttl = between(r, 2*time.Second, 30*time.Second)
	s.poll = between(r, 20*time.Millisecond, 200*time.Millisecond)
	s.initialAge = between(r, 0, s.life(0)*5/4)

	nprocs := 1 + r.IntN(4)
	for i := range nprocs {
		s.procs = append(s.procs, s.drawProc(i))
	}
	s.drawCallers()
	s.drawFaults()
	return s
}

func (s *schedule) drawProc(i int) procPlan {
	r := s.rand("proc", i, 0)
	p := procPlan{id: i}
	if r.IntN(2) == 0 {
		p.refreshTimeout = between(r, time.Second, 30*time.Second)
	}
	if r.IntN(5) < 2 {
		p.leeway = between(r, 2*time.Second, 30*time.Second)
	}
	switch x := r.IntN(10); {
	case x < 2:
		p.ahead = -1
	case x < 5:
		p.ahead = between(r, time.Second, 2*time.Minute)
	}
	// The library jitters its backoff with the global generator; with a
	// 1 ns backoff and one retry the jitter is zero, so timing stays
	// deterministic.
	p.maxRetries = 1
	if r.IntN(3) == 0 {
		p.maxRetries = -1
	}
	if r.IntN(5) < 2 {
		p.closeAt = between(r, 0, s.horizon)
	}
	// Processes closing at the end do not close at one instant.
	p.endGap = between(r, 0, time.Second)
	if r.Float64() < 0.4*s.storm {
		p.crash.kind = crashKind(1 + r.IntN(5))
		p.crash.n = 1 + r.IntN(4)
		p.crash.at = between(r, 0, s.horizon)
	}
	if r.IntN(10) < 3 {
		off := between(r, 0, 2*time.Minute)
		if r.IntN(2) == 0 {
			off = -off
		}
		p.clock = append(p.clock, clockStep{0, off})
		for range r.IntN(3) {
			off := between(r, 0, 5*time.Minute)
			if r.IntN(2) == 0 {
				off = -off
			}
			p.clock = append(p.clock, clockStep{between(r, 0, s.horizon), off})
		}
		slices.SortFunc(p.clock, func(a, b clockStep) int { return int(a.at - b.at) })
	}
	return p
}

// drawCallers places callers in bursts, so that they meet.
func (s *schedule) drawCallers() {
	r := s.rand("callers", 0, 0)
	id := 0
	for range 2 + r.IntN(8) {
		at := between(r, 0, s.horizon)
		for range 1 + r.IntN(6) {
			c := callerPlan{id: id, proc: r.IntN(len(s.procs))}
			id++
			c.start = min(at+between(r, 0, 3*time.Second), s.horizon)
			switch x := r.IntN(20); {
			case x < 7:
				c.kind = callToken
			case x < 13:
				c.kind = callGet
			case x < 17:
				c.kind = callPost
			default:
				c.kind = callRefresh
			}
			c.timeout = logBetween(r, 20*time.Millisecond, time.Minute)
			// Not at the instant Token returned: a refresh ahead that Token
			// started may be starting then too, and goroutines that start
			// at one instant run in any order.
			c.gap = between(r, time.Millisecond, 3*time.Second)
			if r.IntN(5) == 0 {
				c.cancel = between(r, 0, c.timeout)
			}
			s.callers = append(s.callers, c)
		}
	}
	slices.SortStableFunc(s.callers, func(a, b callerPlan) int { return int(a.start - b.start) })
}

func (s *schedule) drawFaults() {
	r := s.rand("windows", 0, 0)
	for range r.IntN(1 + int(s.storm*4)) {
		w := window{kind: windowKind(r.IntN(3)), from: between(r, 0, s.horizon), proc: -1}
		if r.IntN(2) == 0 {
			w.proc = r.IntN(len(s.procs))
		}
		var d time.Duration
		switch w.kind {
		case writesFail:
			d = logBetween(r, 100*time.Millisecond, time.Minute)
		case outage:
			d = logBetween(r, 100*time.Millisecond, 20*time.Second)
			if s.store == redisStore {
				// A holder that cannot reach Redis for about two thirds of
				// LeaseTTL (its last renewal may be a third old when the
				// outage starts) is presumed dead: the one timing contract
				// between processes (docs/refresh.md,
				// redisstore.Store.LeaseTTL). Shorter outages must be
				// survived; -sim.long-redis-outage goes past the contract.
				if s.opts.longRedisOutage {
					d = min(d, s.ttl*19/20)
				} else {
					d = min(d, s.ttl*6/10-200*time.Millisecond)
				}
			}
		case slowStore:
			d = logBetween(r, time.Second, time.Minute)
		}
		w.to = w.from + d
		if w.kind == writesFail && r.IntN(4) == 0 {
			w.to = forever // saves fail until Close, which must say so
		}
		s.windows = append(s.windows, w)
	}
	if s.store == fileStore && s.opts.lockRemoval {
		r := s.rand("lockfile", 0, 0)
		for range r.IntN(3) {
			s.lockRemoval = append(s.lockRemoval, between(r, 0, s.horizon))
		}
		slices.Sort(s.lockRemoval)
	}
	r = s.rand("revocations", 0, 0)
	for range r.IntN(3) {
		s.revocations = append(s.revocations, between(r, 0, s.horizon))
	}
	slices.Sort(s.revocations)
}

// life is the lifetime of the n-th access token the server issues, in
// whole seconds as expires_in carries it.
func (s *schedule) life(n int) time.Duration {
	r := s.rand("life", n, 0)
	return time.Duration(60+r.IntN(541)) * time.Second
}

type tokenFaultKind int

const (
	tfNone        tokenFaultKind = iota
	tf5xx                        // 503, not processed
	tf429                        // 429 with Retry-After, not processed
	tfLostRequest                // never arrives; the client gets a transport error
	tfLostAnswer                 // processed; the client gets a transport error
	tfLost502                    // processed; a gateway answers 502
	tfSlow                       // arrives seconds later, maybe after the client gave up
	tfOdd                        // processed; a 2xx the parser refuses, with a readable refresh token
	tfGarbled                    // processed; a 2xx cut short, no refresh token readable
)

func (k tokenFaultKind) String() string {
	return [...]string{"none", "503", "429", "lost request", "lost answer", "lost answer (502)", "slow", "unusable 2xx", "garbled 2xx"}[k]
}

var faultWeights = []tokenFaultKind{
	tf5xx, tf5xx, tf5xx, tf429, tf429, tf429, tfLostRequest, tfLostRequest,
	tfLostAnswer, tfLost502, tfSlow, tfSlow, tfOdd, tfOdd, tfGarbled,
}

type tokenFault struct {
	kind       tokenFaultKind
	reqDelay   time.Duration // until the server processes it
	respDelay  time.Duration // until the answer reaches the client: at most 1 s
	retryAfter int
	odd        int
}

// tokenFault is what happens to process proc's n-th token request.
func (s *schedule) tokenFault(proc, n int) tokenFault {
	r := s.rand("token", proc, n)
	f := tokenFault{
		reqDelay:  between(r, time.Millisecond, 300*time.Millisecond),
		respDelay: between(r, time.Millisecond, 300*time.Millisecond),
	}
	if r.Float64() < 0.3*s.storm {
		// Faults that lose an outcome end the family on a strict server:
		// rarer, so that schedules go on after most faults.
		f.kind = faultWeights[r.IntN(len(faultWeights))]
		switch f.kind {
		case tf429:
			f.retryAfter = 1 + r.IntN(5)
		case tf5xx:
			if r.IntN(2) == 0 {
				f.retryAfter = 1 + r.IntN(3)
			}
		case tfSlow:
			f.reqDelay = logBetween(r, time.Second, 45*time.Second)
		case tfOdd:
			f.odd = r.IntN(len(oddAnswers))
		}
	}
	return f
}

type storeFault struct {
	latency   time.Duration
	slow      time.Duration // the latency inside a slow window
	replyLost bool          // a write lands and the caller gets an error
}

// storeFault is what happens to process proc's n-th store operation.
func (s *schedule) storeFault(proc, n int) storeFault {
	r := s.rand("store", proc, n)
	return storeFault{
		latency:   between(r, 20*time.Microsecond, 3*time.Millisecond),
		slow:      logBetween(r, 500*time.Millisecond, 10*time.Second),
		replyLost: r.Float64() < 0.04*s.storm,
	}
}

// apiDelay is how long the protected API takes for caller's n-th request.
func (s *schedule) apiDelay(caller, n int) time.Duration {
	return between(s.rand("api", caller, n), time.Millisecond, 150*time.Millisecond)
}

// String prints the plan: what the seed chose before anything ran.
func (s *schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: store %v, %d processes, horizon %v, storm %.2f", s.seed, s.store, len(s.procs), fmtDur(s.horizon), s.storm)
	if s.store == redisStore {
		fmt.Fprintf(&b, ", lease TTL %v, poll %v", fmtDur(s.ttl), fmtDur(s.poll))
	}
	fmt.Fprintf(&b, "\n  stored token: rt-0, issued %v before the start, lifetime %v\n", fmtDur(s.initialAge), s.life(0))
	for _, p := range s.procs {
		fmt.Fprintf(&b, "  p%d: RefreshTimeout %v, Leeway %v, RefreshAhead %v, MaxRetries %d, close %s, crash %v",
			p.id, fmtDur(p.refreshTimeout), fmtDur(p.leeway), fmtDur(p.ahead), p.maxRetries, atOrEnd(p.closeAt), p.crash)
		for _, c := range p.clock {
			fmt.Fprintf(&b, ", clock %+v from %v", c.offset, fmtDur(c.at))
		}
		b.WriteString("\n")
	}
	for _, w := range s.windows {
		who := "every process"
		if w.proc >= 0 {
			who = fmt.Sprintf("p%d", w.proc)
		}
		to := "the end"
		if w.to != forever {
			to = fmtDur(w.to)
		}
		fmt.Fprintf(&b, "  store %v for %s from %v to %s\n", w.kind, who, fmtDur(w.from), to)
	}
	for _, d := range s.lockRemoval {
		fmt.Fprintf(&b, "  lock file removed at %v\n", fmtDur(d))
	}
	for _, d := range s.revocations {
		fmt.Fprintf(&b, "  newest access token revoked at %v\n", fmtDur(d))
	}
	fmt.Fprintf(&b, "  %d callers:", len(s.callers))
	for i, c := range s.callers {
		if i%4 == 0 {
			b.WriteString("\n   ")
		}
		fmt.Fprintf(&b, " c%d p%d %v@%v/%v", c.id, c.proc, c.kind, fmtDur(c.start), fmtDur(c.timeout))
		if c.cancel > 0 {
			fmt.Fprintf(&b, "(cancel %v)", fmtDur(c.cancel))
		}
	}
	b.WriteString("\n")
	return b.String()
}

func atOrEnd(d time.Duration) string {
	if d == 0 {
		return "at the end"
	}
	return "at " + fmtDur(d)
}

// fmtDur prints a duration of the schedule to the microsecond.
func fmtDur(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return d.Round(time.Microsecond).String()
}
