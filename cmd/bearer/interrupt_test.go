package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// Ctrl-C (or SIGTERM, which main turns into the same ctx) during a refresh
// must not lose the rotation: the server rotates once the request has
// arrived, whatever the client does, so the command lets the refresh
// finish, saves the new token, and says so.
func TestTokenInterruptedDuringRefresh(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	g := f.srv.Issue()
	f.seed(t, g)
	f.clock.Advance(accessLife + time.Minute)

	// A gate in front of the token endpoint holds the refresh until the
	// command has been interrupted.
	gt := newGate(t, f.srv.TokenURL())

	ctx, interrupt := context.WithCancel(t.Context())
	var out, errOut bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		env: func(k string) string { return f.env[k] }, now: f.clock.Now}
	done := make(chan int)
	go func() {
		done <- a.run(ctx, []string{"token", "--store", f.store, "--token-url", gt.url})
	}()
	<-gt.arrived
	interrupt()
	close(gt.release)
	code := <-done

	if code == exitOK {
		t.Errorf("exit status = 0 after an interrupt, want a failure")
	}
	if !strings.Contains(errOut.String(), "interrupted") {
		t.Errorf("stderr does not say the command was interrupted:\n%s", errOut.String())
	}
	stored := f.stored(t)
	if stored.RefreshToken == g.RefreshToken || !f.srv.Alive(stored.RefreshToken) {
		t.Errorf("after the interrupt the store holds the spent refresh token or a dead one; want the live rotated one")
	}
	if st := f.srv.Stats(); st.Refreshes != 1 || st.Revocations != 0 {
		t.Errorf("server: %d refreshes, %d revocations; want 1, 0", st.Refreshes, st.Revocations)
	}
	// The next run uses the saved token and sends nothing.
	r := f.run(t, "", f.client("token")...)
	wantCode(t, r, exitOK)
	if st := f.srv.Stats(); st.Refreshes != 1 || st.ReuseAttempts != 0 {
		t.Errorf("server after the next run: %d refreshes, %d reuses; want 1, 0", st.Refreshes, st.ReuseAttempts)
	}
}
