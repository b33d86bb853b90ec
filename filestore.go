package bearer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FileStore is a [Store] in one JSON file, written crash-safe: a new token
// goes to a temporary file in the same folder, which is synced and renamed
// over the old one, and the folder is synced, so a crash at any moment
// leaves either the old token or the new one, never a torn file. The file
// has mode 0600.
//
// FileStore implements [Locker] with an OS advisory lock (flock) on the
// file's folder, so processes on one host that share the file take turns
// to refresh; the OS releases the lock of a process that dies. The folder,
// not a lock file, because a lock file can be deleted under its holder and
// the folder cannot while it holds the token; so FileStores of one folder
// take turns too. On systems without flock the lock only covers the
// process.
//
// A missing file, or a missing folder, is [ErrNoToken] (from Load and from
// Lock, which does not create the folder); Save creates the folder, with
// mode 0700. A corrupt or unreadable file is a clear error, never read as
// empty, and a Source never overwrites it. What Save writes, Load reads:
// Load reads files up to 4 MiB, which holds any token a token endpoint can
// send, and Save refuses, before the old file is replaced, a token that
// Load would refuse or read back changed (an error wrapping
// [ErrUnstorable]). FileStore is safe for concurrent use; set its fields
// before first use.
type FileStore struct {
	// Codec seals the file at rest, such as [NewAESGCM]; nil means plain
	// JSON.
	Codec Codec

	path string
}

var _ Locker = (*FileStore)(nil)

// NewFileStore returns a FileStore for the file at path.
func NewFileStore(path string) *FileStore {
	return &FileStore{path: path}
}

// fileRecord is the file's content.
type fileRecord struct {
	Version int         `json:"version"`
	Token   storedToken `json:"token"`
	// Refreshing is the fingerprint of a refresh token being spent: set
	// before the request leaves, cleared when its result is saved.
	Refreshing string    `json:"refreshing,omitempty"`
	Saved      time.Time `json:"saved"`
}

// Load reads the token from the file.
func (f *FileStore) Load(ctx context.Context) (*Token, error) {
	rec, err := f.read()
	if err != nil {
		return nil, err
	}
	return f.token(rec)
}

// token returns rec's token; a record that holds only a Begin mark (made
// on an empty store) holds no token.
func (f *FileStore) token(rec *fileRecord) (*Token, error) {
	if rec.Token == (storedToken{}) {
		return nil, errorf("file store %s: %w", f.path, ErrNoToken)
	}
	return rec.Token.token()
}

// Save replaces the file's token with t, atomically, creating the folder
// (mode 0700) if it does not exist.
func (f *FileStore) Save(ctx context.Context, t *Token) error {
	if t == nil {
		return fmt.Errorf("bearer: file store: cannot save a nil token")
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return f.errorf("creating the folder: %w", err)
	}
	return f.write(&fileRecord{Token: toStored(t)})
}

// Lock takes the folder's lock, polling until it is free or ctx ends. For
// a folder that does not exist it reports [ErrNoToken]: nothing is stored
// there.
func (f *FileStore) Lock(ctx context.Context) (Lease, error) {
	lock, err := lockFile(ctx, filepath.Dir(f.path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errorf("file store %s: the folder does not exist: %w: %w", f.path, ErrNoToken, err)
	}
	if err != nil {
		return nil, errorf("file store %s: %w", filepath.Base(f.path), err)
	}
	f.removeStaleTemps()
	return &fileLease{f: f, lock: lock}, nil
}

// staleTemp is the age past which a temporary file is abandoned: a process
// was killed between creating and renaming it. Live writers take
// milliseconds.
const staleTemp = time.Minute

// removeStaleTemps deletes temporary files that crashed writers left
// behind; they may hold tokens. Failures only leave them for next time.
func (f *FileStore) removeStaleTemps() {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp-*"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleTemp {
			os.Remove(m)
		}
	}
}

type fileLease struct {
	f    *FileStore
	lock *fileLock // nil after Unlock
}

// check fails with ErrLockLost once the folder was replaced (renamed away,
// another made in its place): another process may hold a lock on that one.
func (l *fileLease) check() error {
	if l.lock == nil || !l.lock.held() {
		return errorf("file store %s: the folder was replaced: %w", filepath.Base(l.f.path), ErrLockLost)
	}
	return nil
}

func (l *fileLease) Load(ctx context.Context) (*Token, error) { return l.f.Load(ctx) }

func (l *fileLease) Begin(ctx context.Context, old *Token) (bool, error) {
	if err := l.check(); err != nil {
		return false, err
	}
	rec, err := l.f.read()
	if errors.Is(err, ErrNoToken) {
		rec, err = &fileRecord{}, nil
	}
	if err != nil {
		return false, err
	}
	fp := fingerprint(old.RefreshToken)
	interrupted := rec.Refreshing == fp
	rec.Refreshing = fp
	return interrupted, l.f.write(rec)
}

func (l *fileLease) CompareAndSwap(ctx context.Context, old, new *Token) error {
	if new == nil {
		return fmt.Errorf("bearer: file store: cannot save a nil token")
	}
	if err := l.check(); err != nil {
		return err
	}
	stored, err := l.Load(ctx)
	if err != nil && !errors.Is(err, ErrNoToken) {
		return err
	}
	if !sameRefresh(stored, old) {
		return errorf("file store %s: %w", filepath.Base(l.f.path), ErrConflict)
	}
	return l.f.write(&fileRecord{Token: toStored(new)})
}

func (l *fileLease) Unlock(ctx context.Context) error {
	if l.lock == nil {
		return nil
	}
	err := l.lock.unlock()
	l.lock = nil
	return err
}

// maxFile caps what Load reads, and so what Save writes. A token file is a
// few kilobytes; the cap is four times the largest token answer (maxBody),
// so that every token a token endpoint can hand over fits, escaped (at
// most twice its size in the answer) and sealed.
const maxFile = 4 * maxBody

func (f *FileStore) errorf(format string, args ...any) error {
	return errorf("file store %s: "+format, append([]any{f.path}, args...)...)
}

func (f *FileStore) read() (*fileRecord, error) {
	fh, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errorf("file store %s: %w", f.path, ErrNoToken)
	}
	if err != nil {
		return nil, f.errorf("%w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFile+1))
	if err != nil {
		return nil, f.errorf("reading: %w", err)
	}
	rec, err := f.parse(data)
	if err != nil {
		return nil, f.errorf("%w", err)
	}
	return rec, nil
}

// parse reads a file's content: what Load accepts, and what write checks
// that Load will accept.
func (f *FileStore) parse(data []byte) (*fileRecord, error) {
	if len(data) > maxFile {
		return nil, fmt.Errorf("corrupt: larger than %d bytes", maxFile)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("corrupt: the file is empty")
	}
	if f.Codec != nil {
		var err error
		if data, err = f.Codec.Open(data); err != nil {
			return nil, err
		}
	}
	var rec fileRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil || dec.InputOffset() != int64(len(bytes.TrimRight(data, " \t\r\n"))) {
		// Not the decoder's text: it may quote the file, which holds secrets.
		return nil, errors.New("corrupt: not a bearer token file")
	}
	if rec.Version != 1 {
		return nil, fmt.Errorf("corrupt: unknown version %d", rec.Version)
	}
	return &rec, nil
}

// indentBelow is the size under which a file is indented for the eye. A
// larger one (a token with a huge Info) stays compact: indenting costs a
// slow pass over all of it.
const indentBelow = 64 << 10

// encode returns the file's content for rec. It refuses, wrapping
// [ErrUnstorable], what Load would not read back as rec: a file over
// maxFile, or a token Load refuses or would read changed.
func (f *FileStore) encode(rec *fileRecord) ([]byte, error) {
	rec.Version = 1
	// Whole seconds: the file's size does not depend on the clock.
	rec.Saved = time.Now().UTC().Truncate(time.Second)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// "<" stays one byte, not six: the file stays about as large as the
	// answer the token came in.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rec); err != nil {
		return nil, f.errorf("%w: %w", ErrUnstorable, err)
	}
	data := buf.Bytes()
	if len(data) < indentBelow {
		var ind bytes.Buffer
		json.Indent(&ind, data, "", "  ") // valid JSON: cannot fail
		data = ind.Bytes()
	}
	if f.Codec != nil {
		var err error
		if data, err = f.Codec.Seal(data); err != nil {
			return nil, f.errorf("%w", err)
		}
	}
	if len(data) > maxFile {
		return nil, f.errorf("%w: the file would be %d bytes, over the %d that Load reads", ErrUnstorable, len(data), maxFile)
	}
	back, err := f.parse(data)
	if err != nil {
		return nil, f.errorf("%w: Load would refuse the file: %w", ErrUnstorable, err)
	}
	if rec.Token != (storedToken{}) {
		if err := readsBack(rec.Token, back.Token); err != nil {
			return nil, f.errorf("%w", err)
		}
	}
	return data, nil
}

// write replaces the file crash-safe: temp file, fsync, rename, fsync dir.
// What Load would not read back is refused before anything is written.
func (f *FileStore) write(rec *fileRecord) error {
	data, err := f.encode(rec)
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp-*")
	if err != nil {
		return f.errorf("%w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return f.errorf("%w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return f.errorf("writing: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return f.errorf("syncing: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return f.errorf("closing: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return f.errorf("%w", err)
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return errorf("file store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return errorf("file store: syncing folder: %w", err)
	}
	return nil
}
