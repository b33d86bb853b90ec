package bearer

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// A store that cannot be written, as README's failure table says: before a
// refresh (a read-only or missing folder, a full disk) the Source sends
// nothing, since it records a refresh in the store before sending it; once
// the server rotated (the folder turns read-only or goes, the disk fills,
// mid-refresh) the new token is used in memory and the save is retried
// until it lands.

// unwritable is a way a FileStore's folder stops taking writes.
type unwritable struct {
	name     string
	want     error // what the failed write wraps
	readOnly bool  // needs a folder that even root cannot write to
	// brk breaks dir (or the store) and returns how to mend it. It may run
	// on another goroutine than the test's: it reports with t.Error.
	brk func(t *testing.T, dir string, d *fullDisk) (mend func())
}

var unwritables = []unwritable{
	{"read-only folder", fs.ErrPermission, true, func(t *testing.T, dir string, _ *fullDisk) func() {
		return readOnly(t, dir)
	}},
	{"missing folder", fs.ErrNotExist, false, func(t *testing.T, dir string, _ *fullDisk) func() {
		mustDo(t, os.RemoveAll(dir))
		return func() { mustDo(t, os.Mkdir(dir, 0o700)) }
	}},
	{"folder is a file", syscall.ENOTDIR, false, func(t *testing.T, dir string, _ *fullDisk) func() {
		mustDo(t, os.RemoveAll(dir))
		mustDo(t, os.WriteFile(dir, nil, 0o600))
		return func() {
			mustDo(t, os.Remove(dir))
			mustDo(t, os.Mkdir(dir, 0o700))
		}
	}},
	{"full disk", syscall.ENOSPC, false, func(t *testing.T, dir string, d *fullDisk) func() {
		d.full.Store(true)
		return func() { d.full.Store(false) }
	}},
}

// mustDo reports err; it may run on any goroutine.
func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}

// readOnly makes dir unwritable and returns how to undo it. Root ignores
// file modes, so where chmod is not enough it makes dir immutable with
// chattr +i, which stops root too. skipUnlessReadOnly tells whether it can.
func readOnly(t *testing.T, dir string) (undo func()) {
	immutable := false
	undo = func() {
		if immutable {
			exec.Command("chattr", "-i", dir).Run()
		}
		os.Chmod(dir, 0o700)
	}
	t.Cleanup(undo) // before t.TempDir's removal, which needs a writable folder
	mustDo(t, os.Chmod(dir, 0o500))
	if writable(dir) {
		mustDo(t, exec.Command("chattr", "+i", dir).Run())
		immutable = true
	}
	if writable(dir) {
		t.Errorf("%s is still writable", dir)
	}
	return undo
}

// skipUnlessReadOnly skips the test where readOnly cannot work: as root,
// without chattr +i (a file system without the immutable flag, a process
// without CAP_LINUX_IMMUTABLE).
func skipUnlessReadOnly(t *testing.T) {
	dir := t.TempDir()
	mustDo(t, os.Chmod(dir, 0o500))
	defer os.Chmod(dir, 0o700)
	if !writable(dir) {
		return
	}
	if exec.Command("chattr", "+i", dir).Run() == nil {
		defer exec.Command("chattr", "-i", dir).Run()
		if !writable(dir) {
			return
		}
	}
	t.Skip("cannot make a folder read-only here: running as root, and chattr +i does not work")
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// fullDisk is a FileStore whose writes fail with ENOSPC while full is set.
// saved receives a value for each compare-and-swap that lands.
type fullDisk struct {
	*FileStore
	full  atomic.Bool
	saved chan struct{}
}

type fullLease struct {
	Lease
	d *fullDisk
}

func (d *fullDisk) err() error {
	return &fs.PathError{Op: "write", Path: d.path, Err: syscall.ENOSPC}
}

func (d *fullDisk) Save(ctx context.Context, t *Token) error {
	if d.full.Load() {
		return d.err()
	}
	return d.FileStore.Save(ctx, t)
}

func (d *fullDisk) Lock(ctx context.Context) (Lease, error) {
	l, err := d.FileStore.Lock(ctx)
	if err != nil {
		return nil, err
	}
	return &fullLease{Lease: l, d: d}, nil
}

func (l *fullLease) Begin(ctx context.Context, old *Token) (bool, error) {
	if l.d.full.Load() {
		return false, l.d.err()
	}
	return l.Lease.Begin(ctx, old)
}

func (l *fullLease) CompareAndSwap(ctx context.Context, old, new *Token) error {
	if l.d.full.Load() {
		return l.d.err()
	}
	err := l.Lease.CompareAndSwap(ctx, old, new)
	if err == nil {
		l.d.saved <- struct{}{}
	}
	return err
}

// onSend runs fn before the first request it sends.
type onSend struct {
	base http.RoundTripper
	once sync.Once
	fn   func()
}

func (o *onSend) RoundTrip(r *http.Request) (*http.Response, error) {
	o.once.Do(o.fn)
	return o.base.RoundTrip(r)
}

// unwritableSetup is a Source over a real FileStore in its own folder,
// holding a live token that expires when the clock moves 200 s. fn, if not
// nil, runs before the first token request leaves.
type unwritableSetup struct {
	f      *fixture
	dir    string
	disk   *fullDisk
	src    *Source
	failed chan error // every SaveFailed call
}

func newUnwritable(t *testing.T, beforeSend func()) *unwritableSetup {
	u := &unwritableSetup{f: newFixture(t, bearertest.Config{}), dir: filepath.Join(t.TempDir(), "state"), failed: make(chan error, 100)}
	mustDo(t, os.Mkdir(u.dir, 0o700))
	u.disk = &fullDisk{FileStore: NewFileStore(filepath.Join(u.dir, "token.json")), saved: make(chan struct{}, 100)}
	mustDo(t, u.disk.Save(t.Context(), u.f.token()))
	cfg := u.f.config()
	if beforeSend != nil {
		cfg.HTTPClient = &http.Client{Transport: &onSend{base: cfg.HTTPClient.Transport, fn: beforeSend}}
	}
	cfg.Hooks.SaveFailed = func(_ context.Context, err error) { u.failed <- err }
	u.src = NewSource(cfg, u.disk)
	if _, err := u.src.Token(t.Context()); err != nil { // loaded under the file lock
		t.Fatal(err)
	}
	return u
}

// TestUnwritable breaks the store's folder (read-only, missing, a file,
// a full disk) before a refresh, and after the server rotated.
func TestUnwritable(t *testing.T) {
	t.Parallel() // waits on real time or the disk; touches nothing shared
	t.Run("before a refresh", testUnwritableBeforeRefresh)
	t.Run("after the rotation", testUnwritableAfterRotation)
}

// testUnwritableBeforeRefresh: the store cannot record the refresh, so no
// refresh token is sent; Token reports the store's error once the access
// token expired, and refreshes once the folder is mended.
func testUnwritableBeforeRefresh(t *testing.T) {
	for _, uw := range unwritables {
		t.Run(uw.name, func(t *testing.T) {
			if uw.readOnly {
				skipUnlessReadOnly(t)
			}
			u := newUnwritable(t, nil)
			mend := uw.brk(t, u.dir, u.disk)
			u.f.clock.Advance(200 * time.Second)
			_, err := u.src.Token(t.Context())
			if !errors.Is(err, uw.want) {
				t.Errorf("Token = %v, want an error wrapping %v", err, uw.want)
			}
			if n := u.f.srv.Stats().TokenRequests; n != 0 {
				t.Errorf("token requests = %d, want 0: nothing may be spent that cannot be recorded", n)
			}
			if len(u.failed) != 0 {
				t.Errorf("SaveFailed called %d times, want 0: there is nothing new to save", len(u.failed))
			}
			mend()
			tok, err := u.src.Token(t.Context())
			if err != nil {
				t.Fatalf("Token after mending: %v", err)
			}
			if st := u.f.srv.Stats(); st.Refreshes != 1 || st.ReuseAttempts != 0 {
				t.Errorf("refreshes, reuses = %d, %d; want 1, 0", st.Refreshes, st.ReuseAttempts)
			}
			mustDo(t, u.src.Close())
			unwritableSaved(t, u, tok)
		})
	}
}

// testUnwritableAfterRotation: the folder breaks while the refresh request
// is on its way, after the store recorded it: the new token is used, the
// save fails, is retried in the background, and lands once mended.
func testUnwritableAfterRotation(t *testing.T) {
	// The cases wait on the Source's save retries (100 ms, then doubling),
	// each in its own folder: they run side by side.
	var subtests []subtest
	for _, uw := range unwritables {
		subtests = append(subtests, subtest{uw.name, func(t *testing.T) {
			if uw.readOnly {
				skipUnlessReadOnly(t)
			}
			var mend func()
			var u *unwritableSetup
			u = newUnwritable(t, func() { mend = uw.brk(t, u.dir, u.disk) })
			u.f.clock.Advance(200 * time.Second)
			tok, err := u.src.Token(t.Context())
			if err != nil {
				t.Fatalf("Token = %v, want the new token although it is not saved", err)
			}
			if tok.RefreshToken == u.f.grant.RefreshToken || !u.f.srv.Alive(tok.RefreshToken) {
				t.Errorf("Token = a refresh token alive=%v, want the server's new head", u.f.srv.Alive(tok.RefreshToken))
			}
			// The save is retried in the background and fails, in the
			// end with the folder's own error (a folder that went first
			// fails as a store emptied under its lock, then as a lost lock).
			guard := time.After(time.Minute) // against a hang, not an ordering
			for n := 0; ; n++ {
				select {
				case err := <-u.failed:
					if !errors.Is(err, uw.want) {
						continue
					}
					if n == 0 {
						continue // the save during the refresh; wait for a retry
					}
				case <-guard:
					t.Fatalf("no retried save failed with %v within a minute", uw.want)
				}
				break
			}
			if n := u.src.Stats().SaveFailures; n < 2 {
				t.Errorf("Stats().SaveFailures = %d, want at least 2", n)
			}
			if len(u.disk.saved) != 0 {
				t.Fatal("a save landed while the folder was broken")
			}
			failures := u.src.Stats().SaveFailures
			mend()
			mended := time.Now()
			select {
			case <-u.disk.saved:
			case <-guard:
				t.Fatal("the retried save did not land within a minute of the mending")
			}
			t.Logf("%d failed saves while broken; the retry landed %v after the mending", failures, time.Since(mended).Round(time.Millisecond))
			if err := u.src.Close(); err != nil {
				t.Fatalf("Close = %v, want nil: the save landed", err)
			}
			if st := u.f.srv.Stats(); st.TokenRequests != 1 || st.ReuseAttempts != 0 {
				t.Errorf("token requests, reuses = %d, %d; want 1, 0", st.TokenRequests, st.ReuseAttempts)
			}
			unwritableSaved(t, u, tok)
		}})
	}
	sideBySide(t, subtests...)
}

// unwritableSaved fails unless the file holds tok, the server's live head.
func unwritableSaved(t *testing.T, u *unwritableSetup, tok *Token) {
	t.Helper()
	got, err := NewFileStore(u.disk.path).Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.RefreshToken != tok.RefreshToken || !u.f.srv.Alive(got.RefreshToken) {
		t.Errorf("file holds a refresh token alive=%v, want the Source's, the live head", u.f.srv.Alive(got.RefreshToken))
	}
}
