package sim

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	flagSeed    = flag.Uint64("sim.seed", 0, "replay only this seed and print its schedule and trace")
	flagN       = flag.Int("sim.n", 10000, "schedules to run after the corpus (with -short: 300)")
	flagBase    = flag.Uint64("sim.base", 1, "the first seed; a run uses base .. base+n-1")
	flagRandom  = flag.Bool("sim.random", false, "start at a random base seed (printed), to explore new schedules")
	flagWorkers = flag.Int("sim.workers", 0, "schedules run at once; 0 means GOMAXPROCS")
	flagMaxFail = flag.Int("sim.maxfail", 5, "stop after this many failing schedules")
	flagV       = flag.Bool("sim.v", false, "print the trace of every schedule")
	flagRecord  = flag.Bool("sim.record", false, "append failing seeds to testdata/corpus.txt")
	flagStore   = flag.String("sim.store", "", "run only schedules that draw this store: memory, file or redis")
	flagMutant  = flag.String("sim.mutant", "", "plant a defect in the simulated world (see mutants) to see how it is caught")

	// Fault classes that found a defect still open are off by default,
	// so that CI stays green; turn them on to work on the defect.
	flagLockRemoval = flag.Bool("sim.lockfile-removal", true, "delete what was the FileStore's lock file at random moments (found a double spend before FileStore locked the folder: see testdata/corpus.txt)")
	flagLongOutage  = flag.Bool("sim.long-redis-outage", false, "Redis outages up to LeaseTTL, which a holder must survive (finds a lapsed lease and a double spend: see testdata/corpus.txt)")
)

const corpusFile = "testdata/corpus.txt"

func runOptions() options {
	return options{lockRemoval: *flagLockRemoval, longRedisOutage: *flagLongOutage, mutant: *flagMutant}
}

// TestSim replays the corpus, then runs -sim.n schedules from -sim.base.
func TestSim(t *testing.T) {
	opts := runOptions()
	if *flagSeed != 0 {
		s := drawSchedule(*flagSeed, opts)
		out := runSchedule(t, s)
		t.Logf("%s\ntrace:\n%s", s, formatTrace(out.trace))
		report(t, s, out)
		var st stats
		st.add(out.st)
		t.Logf("%v", &st)
		return
	}
	var total stats
	var mu sync.Mutex
	add := func(st stats) {
		mu.Lock()
		total.add(st)
		mu.Unlock()
	}
	t.Run("corpus", func(t *testing.T) {
		for _, e := range readCorpus(t) {
			o := opts
			if e.lockRemoval && !o.lockRemoval {
				t.Logf("seed %d needs -sim.lockfile-removal: skipped (%s)", e.seed, e.note)
				continue
			}
			if e.longRedisOutage && !o.longRedisOutage {
				t.Logf("seed %d needs -sim.long-redis-outage: skipped (%s)", e.seed, e.note)
				continue
			}
			o.lockRemoval, o.longRedisOutage = e.lockRemoval, e.longRedisOutage
			t.Run(strconv.FormatUint(e.seed, 10), func(t *testing.T) {
				s := drawSchedule(e.seed, o)
				out := runSchedule(t, s)
				add(out.st)
				report(t, s, out)
			})
		}
	})
	base := *flagBase
	if *flagRandom {
		base = rand.Uint64() >> 1
		t.Logf("base seed %d", base)
	}
	n := schedules()
	start := time.Now()
	var failed, ran atomic.Int64
	t.Run("seeds", func(t *testing.T) {
		forSeeds(base, n, func(seed uint64) bool {
			if failed.Load() >= int64(*flagMaxFail) {
				return false
			}
			s := drawSchedule(seed, opts)
			if *flagStore != "" && s.store.String() != *flagStore {
				return true
			}
			t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
				out := runSchedule(t, s)
				ran.Add(1)
				add(out.st)
				if report(t, s, out) {
					failed.Add(1)
				}
			})
			return true
		})
	})
	took := time.Since(start)
	if k := ran.Load(); k > 0 {
		t.Logf("seeds from %d: %d schedules in %v, %.0f schedules/s", base, k, took.Round(time.Millisecond), float64(k)/took.Seconds())
	}
	t.Logf("with the corpus: %v", &total)
}

// TestSimDeterministic runs schedules twice and compares what happened:
// a seed must replay the same schedule, or a failure could not be studied.
func TestSimDeterministic(t *testing.T) {
	if *flagSeed != 0 {
		t.Skip("-sim.seed replays one schedule")
	}
	n := max(schedules()/50, 20)
	var differ atomic.Int64
	forSeeds(1_000_000_007, n, func(seed uint64) bool {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			s := drawSchedule(seed, runOptions())
			a := runSchedule(t, s)
			b := runSchedule(t, s)
			if ha, hb := traceHash(a.trace), traceHash(b.trace); ha != hb {
				differ.Add(1)
				t.Errorf("seed %d: two runs differ:\nfirst:\n%s\nsecond:\n%s", seed, formatTrace(canonical(a.trace)), formatTrace(canonical(b.trace)))
			}
		})
		return differ.Load() < 3
	})
}

// mutants are defects planted in the simulated world (not in bearer), each
// breaking what one check guards. TestSimMutants shows that every one is
// caught: a check that never fails proves nothing.
var mutants = []struct{ name, breaks string }{
	{"lost-write", "a store that reports a write it lost: the store loses the newest token (2), or a spent one is sent again (1)"},
	{"stale-read", "a store whose Load lags one write behind, breaking read-your-writes: a spent token is sent again (1)"},
	{"no-exclusion", "a Redis lock that lets every taker in: two processes spend one token (1)"},
	{"short-life", "a server whose tokens die 30 s before expires_in says: tokens handed out expired on its clock (3)"},
	{"leak", "a goroutine that outlives Close (4)"},
}

// TestSimMutants runs schedules with each mutant until one fails.
func TestSimMutants(t *testing.T) {
	if *flagSeed != 0 {
		t.Skip("-sim.seed replays one schedule")
	}
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			var caught atomic.Pointer[string]
			var tried atomic.Int64
			forSeeds(1, 3000, func(seed uint64) bool {
				if caught.Load() != nil {
					return false
				}
				tried.Add(1)
				s := drawSchedule(seed, options{mutant: m.name})
				if m.name == "no-exclusion" && s.store != redisStore {
					return true
				}
				out := runSchedule(t, s)
				if len(out.failures) > 0 {
					msg := fmt.Sprintf("seed %d: %s", seed, firstLine(out.failures[0]))
					caught.CompareAndSwap(nil, &msg)
					return false
				}
				return true
			})
			if msg := caught.Load(); msg != nil {
				t.Logf("caught after %d schedules: %s", tried.Load(), *msg)
			} else {
				t.Errorf("mutant %s (%s) survived %d schedules", m.name, m.breaks, tried.Load())
			}
		})
	}
}

// schedules is how many schedules a run draws: -sim.n, or 300 with -short
// unless -sim.n is given.
func schedules() int {
	if testing.Short() {
		set := false
		flag.Visit(func(f *flag.Flag) { set = set || f.Name == "sim.n" })
		if !set {
			return 300
		}
	}
	return *flagN
}

// forSeeds calls f for n seeds from base on a pool of workers, until f
// returns false.
func forSeeds(base uint64, n int, f func(seed uint64) bool) {
	workers := *flagWorkers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	seeds := make(chan uint64)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for seed := range seeds {
				if !stop.Load() && !f(seed) {
					stop.Store(true)
				}
			}
		})
	}
	for i := range n {
		if stop.Load() {
			break
		}
		seeds <- base + uint64(i)
	}
	close(seeds)
	wg.Wait()
}

// report fails t with the seed, the failures, the plan and the trace, and
// says whether it did.
func report(t *testing.T, s *schedule, out *outcome) bool {
	t.Helper()
	if *flagV && *flagSeed == 0 {
		t.Logf("%s\ntrace:\n%s", s, formatTrace(out.trace))
	}
	if len(out.failures) == 0 {
		return false
	}
	flags := ""
	if s.opts.lockRemoval {
		flags += " -sim.lockfile-removal"
	}
	if s.opts.longRedisOutage {
		flags += " -sim.long-redis-outage"
	}
	t.Errorf("seed %d broke the protocol's invariants:\n  %s\n\nschedule:\n%s\ntrace (what happened, in order):\n%s\nreplay: go test ./internal/sim -run 'TestSim$' -sim.seed=%d%s\nkeep it: add %q to internal/sim/%s (or run with -sim.record)",
		s.seed, strings.Join(out.failures, "\n  "), s, formatTrace(out.trace), s.seed, flags, corpusLine(s, out), corpusFile)
	if *flagRecord {
		recordSeed(t, corpusLine(s, out))
	}
	return true
}

func corpusLine(s *schedule, out *outcome) string {
	line := strconv.FormatUint(s.seed, 10)
	if s.opts.lockRemoval {
		line += " lockfile-removal"
	}
	if s.opts.longRedisOutage {
		line += " long-redis-outage"
	}
	first := out.failures[0]
	if i := strings.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	return line + " # " + first
}

type corpusEntry struct {
	seed            uint64
	lockRemoval     bool
	longRedisOutage bool
	note            string
}

// readCorpus reads testdata/corpus.txt: a seed per line, then the fault
// classes it needs, then a comment after #.
func readCorpus(t *testing.T) []corpusEntry {
	f, err := os.Open(corpusFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var es []corpusEntry
	gen := 0
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text, note, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "generator" && len(fields) == 2 {
			gen, _ = strconv.Atoi(fields[1])
			continue
		}
		if gen != generator {
			t.Errorf("%s:%d: its seeds were drawn by generator %d, and schedules are now drawn by generator %d: "+
				"they no longer name the schedules that failed; find them again (see the file's header)", corpusFile, line, gen, generator)
			return nil
		}
		seed, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			t.Fatalf("%s:%d: %q is not a seed", corpusFile, line, fields[0])
		}
		e := corpusEntry{seed: seed, note: strings.TrimSpace(note)}
		for _, c := range fields[1:] {
			switch c {
			case "lockfile-removal":
				e.lockRemoval = true
			case "long-redis-outage":
				e.longRedisOutage = true
			default:
				t.Fatalf("%s:%d: unknown fault class %q", corpusFile, line, c)
			}
		}
		es = append(es, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return es
}

var recordMu sync.Mutex

func recordSeed(t *testing.T, line string) {
	recordMu.Lock()
	defer recordMu.Unlock()
	f, err := os.OpenFile(corpusFile, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Errorf("recording the seed: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// canonical orders events by time, and events of one instant by text:
// goroutines that wake at the same fake instant run in any order, and
// what they log then is the same set, not the same sequence.
func canonical(trace []event) []event {
	c := slices.Clone(trace)
	slices.SortStableFunc(c, func(a, b event) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return strings.Compare(a.text(), b.text())
	})
	return c
}

func traceHash(trace []event) [32]byte {
	h := sha256.New()
	for _, e := range canonical(trace) {
		fmt.Fprintf(h, "%d %s\n", e.at, e.text())
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
