package bearer_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

const (
	mpAPIEnv   = "BEARER_TEST_API_URL"
	mpEpochEnv = "BEARER_TEST_EPOCH" // unix nanoseconds: the scaled clocks' origin

	// mpScale speeds up the clock of the server and of every child: an
	// access token of mpLifetime lives mpLifetime/mpScale of real time
	// (300 ms), while the token endpoint still sees whole seconds.
	mpScale    = 10
	mpLifetime = 3 * time.Second
	mpChildren = 4
	// mpActive is how long, in real time, the parent lets every child
	// send requests once each has had its first answer: over six
	// lifetimes.
	mpActive = 2 * time.Second
)

// mpClock runs mpScale times faster than the wall clock from epoch. It
// reads the wall clock, not the monotonic one, so every process on the
// host agrees on it.
type mpClock struct{ epoch time.Time }

func (c mpClock) Now() time.Time {
	return c.epoch.Add(time.Now().Round(0).Sub(c.epoch) * mpScale)
}

// TestMultiprocessChild is a child of TestMultiprocessOneRefreshPerExpiry:
// a Source of its own over the shared FileStore, used through a Transport
// against the protected API every 10 ms until the parent stops it (or
// until BEARER_TEST_UNTIL, a safety net). It prints a progress line at its
// first answer and a stats line, with the time it stopped, at the end.
func TestMultiprocessChild(t *testing.T) {
	if os.Getenv(childEnv) != "multiprocess" {
		return
	}
	epoch, err1 := strconv.ParseInt(os.Getenv(mpEpochEnv), 10, 64)
	until, err2 := strconv.ParseInt(os.Getenv(childEndEnv), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	clock := mpClock{epoch: time.Unix(0, epoch)}
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	src := bearer.NewSource(bearer.Config{
		TokenURL:     os.Getenv(childURLEnv),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		HTTPClient:   &http.Client{Transport: base, Timeout: 10 * time.Second},
		Now:          clock.Now,
		RetryBackoff: time.Millisecond,
	}, bearer.NewFileStore(os.Getenv(childFileEnv)))
	client := &http.Client{Transport: &bearer.Transport{Source: src, Base: base}, Timeout: 10 * time.Second}
	api := os.Getenv(mpAPIEnv) + "work"

	var requests, failures int
	tick := time.NewTicker(10 * time.Millisecond) // pacing the load, not synchronising
	defer tick.Stop()
	stopped := childStopped()
	stop := time.Unix(0, until)
load:
	for time.Now().Before(stop) {
		resp, err := client.Get(api)
		requests++
		switch {
		case err != nil:
			failures++
			fmt.Printf("error request: %v\n", err)
		case resp.StatusCode != http.StatusOK:
			failures++
			resp.Body.Close()
			fmt.Printf("error status %d\n", resp.StatusCode)
		default:
			resp.Body.Close()
			if requests-failures == 1 {
				fmt.Println("progress")
			}
		}
		select {
		case <-tick.C:
		case <-stopped:
			break load
		}
	}
	stop = time.Now()
	if err := src.Close(); err != nil {
		t.Error(err)
	}
	st := src.Stats()
	fmt.Printf("stats requests=%d failures=%d refreshes=%d adopted=%d refreshfailures=%d end=%d\n",
		requests, failures, st.Refreshes, st.Adopted, st.Failures, stop.UnixNano())
}

// TestMultiprocessOneRefreshPerExpiry runs four processes, each with its
// own Source over one FileStore, against a strict server whose access
// tokens live 300 ms, all of them for 2 s: over six expiries. The file lock
// must make them share every rotation: no refresh token is presented
// twice, the server rotates once per token lifetime (within the bounds
// below), and the file ends holding the family's live head.
func TestMultiprocessOneRefreshPerExpiry(t *testing.T) {
	t.Parallel() // child processes: mostly waiting
	epoch := time.Now().Round(0)
	clock := mpClock{epoch: epoch}
	srv := bearertest.NewServer(bearertest.Config{AccessLifetime: mpLifetime, Now: clock.Now})
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token.json")
	ctx := context.Background()
	g := srv.Issue()
	begin := clock.Now()
	if err := bearer.NewFileStore(path).Save(ctx, tokenFromGrant(g)); err != nil {
		t.Fatal(err)
	}

	until := time.Now().Add(mpActive + 15*time.Second)
	env := []string{
		childURLEnv + "=" + srv.TokenURL(),
		mpAPIEnv + "=" + srv.APIURL(),
		childFileEnv + "=" + path,
		fmt.Sprintf("%s=%d", mpEpochEnv, epoch.UnixNano()),
		fmt.Sprintf("%s=%d", childEndEnv, until.UnixNano()),
	}
	var children []*child
	for range mpChildren {
		children = append(children, startChild(t, "TestMultiprocessChild", "multiprocess", env...))
	}
	for i, c := range children {
		if !c.waitProgress(1, 10*time.Second) {
			t.Fatalf("child %d made no progress; stderr: %s", i, c.dump())
		}
	}
	active := clock.Now() // every child is sending requests
	time.Sleep(mpActive)  // the load's duration, not a synchronisation
	for _, c := range children {
		c.stop()
	}
	var childRefreshes, requests int
	activeEnd := until
	for i, c := range children {
		if err := <-c.exited; err != nil {
			c.exited <- err
			t.Fatalf("child %d: %v; stderr: %s", i, err, c.out.stderr.String())
		}
		c.exited <- nil
		_, lines := c.out.snapshot()
		errs := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "error") {
				if errs++; errs <= 3 {
					t.Errorf("child %d: %s", i, l)
				}
				continue
			}
			var req, fail, ref, adopted, rfail int
			var stop int64
			if _, err := fmt.Sscanf(l, "stats requests=%d failures=%d refreshes=%d adopted=%d refreshfailures=%d end=%d", &req, &fail, &ref, &adopted, &rfail, &stop); err != nil {
				t.Errorf("child %d: %s", i, l)
				continue
			}
			if errs > 3 {
				t.Errorf("child %d: %d more error lines", i, errs-3)
			}
			t.Logf("child %d: requests %d, failed %d, refreshes %d, adopted %d, failed refreshes %d", i, req, fail, ref, adopted, rfail)
			childRefreshes += ref
			if e := time.Unix(0, stop); e.Before(activeEnd) {
				activeEnd = e
			}
			requests += req
			if fail != 0 || rfail != 0 {
				t.Errorf("child %d: %d failed requests, %d failed refreshes; want 0", i, fail, rfail)
			}
		}
	}
	end := clock.Now()

	st := srv.Stats()
	// A token is refreshed no earlier than its refresh-ahead point, a
	// quarter of its lifetime before expiry, and no later than its expiry
	// while requests flow. So from the first issue to the end there are at
	// most span/(3/4 lifetime)+1 refreshes, and while every child was
	// sending requests at least that span/lifetime-1.
	ahead := mpLifetime / 4
	maxRefreshes := int((end.Sub(begin))/(mpLifetime-ahead)) + 1
	activeEndScaled := epoch.Add(activeEnd.Sub(epoch) * mpScale)
	activeLifetimes := float64(activeEndScaled.Sub(active)) / float64(mpLifetime)
	minRefreshes := int(activeLifetimes) - 1
	t.Logf("%d processes, access lifetime %v real (%v on the scaled clock): %.1f lifetimes from issue to end, %.1f with all processes active; %d refreshes (bounds [%d, %d]), %d by the children; %d requests, %d answered 401; reuse attempts %d, revocations %d",
		mpChildren, mpLifetime/mpScale, mpLifetime, float64(end.Sub(begin))/float64(mpLifetime), activeLifetimes,
		st.Refreshes, max(5, minRefreshes), maxRefreshes, childRefreshes, requests, st.APIRejected, st.ReuseAttempts, st.Revocations)

	if activeLifetimes < 5 {
		t.Errorf("all processes were active for %.1f token lifetimes, want at least 5", activeLifetimes)
	}
	if st.Refreshes < max(5, minRefreshes) || st.Refreshes > maxRefreshes {
		t.Errorf("server refreshes = %d, want within [%d, %d]: one per token lifetime", st.Refreshes, max(5, minRefreshes), maxRefreshes)
	}
	if childRefreshes != st.Refreshes {
		t.Errorf("children report %d refreshes, the server rotated %d times", childRefreshes, st.Refreshes)
	}
	if st.ReuseAttempts != 0 || st.InvalidGrants != 0 || st.Revocations != 0 {
		t.Errorf("reuse attempts, invalid grants, revocations = %d, %d, %d; want 0, 0, 0", st.ReuseAttempts, st.InvalidGrants, st.Revocations)
	}
	saved, err := bearer.NewFileStore(path).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head, alive := srv.Head(g.Family); !alive || saved.RefreshToken != head.RefreshToken || !srv.Alive(saved.RefreshToken) {
		t.Errorf("the file does not hold the family's live head at the end")
	}
}

// TestLockHolderChild is the child of TestMultiprocessLockWaitAndRelease:
// it takes the FileStore lock, says so, and holds it until killed (or its
// time is up).
func TestLockHolderChild(t *testing.T) {
	if os.Getenv(childEnv) != "lockholder" {
		return
	}
	until, err := strconv.ParseInt(os.Getenv(childEndEnv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := bearer.NewFileStore(os.Getenv(childFileEnv)).Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("progress locked")
	<-time.After(time.Until(time.Unix(0, until))) // the safety net if the parent dies
	lease.Unlock(context.Background())
}

// TestMultiprocessLockWaitAndRelease checks the FileStore lock across
// processes: while another process holds it, Lock returns promptly with
// the caller's context error (cancelled before the call, or timing out
// while it waits), and once the holder is killed with SIGKILL the OS
// releases the lock and Lock succeeds.
func TestMultiprocessLockWaitAndRelease(t *testing.T) {
	t.Parallel() // child processes: mostly waiting
	path := filepath.Join(t.TempDir(), "token.json")
	store := bearer.NewFileStore(path)
	c := startChild(t, "TestLockHolderChild", "lockholder",
		childFileEnv+"="+path, fmt.Sprintf("%s=%d", childEndEnv, time.Now().Add(30*time.Second).UnixNano()))
	if !c.waitProgress(1, 15*time.Second) {
		t.Fatalf("child did not take the lock; stderr: %s", c.dump())
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	lease, err := store.Lock(cancelled)
	if err == nil {
		lease.Unlock(context.Background())
		t.Fatalf("Lock() succeeded while another process holds the lock")
	}
	if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Errorf("Lock(cancelled ctx) = %v after %v; want context.Canceled at once", err, time.Since(start))
	}

	const wait = 200 * time.Millisecond
	timeout, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start = time.Now()
	lease, err = store.Lock(timeout)
	elapsed := time.Since(start)
	if err == nil {
		lease.Unlock(context.Background())
		t.Fatalf("Lock() succeeded while another process holds the lock")
	}
	if !errors.Is(err, context.DeadlineExceeded) || elapsed < wait || elapsed > wait+time.Second {
		t.Errorf("Lock(ctx with %v timeout) = %v after %v; want DeadlineExceeded after about %v", wait, err, elapsed, wait)
	}

	c.kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start = time.Now()
	lease, err = store.Lock(ctx)
	if err != nil {
		t.Fatalf("Lock() after the holder died = %v, want the lock", err)
	}
	t.Logf("lock taken %v after the holder was killed", time.Since(start))
	if err := lease.Unlock(ctx); err != nil {
		t.Error(err)
	}
}
