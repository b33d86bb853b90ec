package bearer

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fsToken is a token with every field set, distinctive secrets included.
func fsToken() *Token {
	return &Token{
		AccessToken:   "AT-FILE-1a2b",
		TokenType:     "Bearer",
		RefreshToken:  "RT-FILE-3c4d",
		Expiry:        time.Date(2031, time.January, 2, 3, 4, 5, 600, time.UTC),
		RefreshExpiry: time.Date(2032, time.February, 3, 4, 5, 6, 0, time.FixedZone("CET", 3600)),
		Info:          json.RawMessage(`{"user": {"id": 42}, "scopes": ["a", "b"]}`),
	}
}

// fsTokenEqual is tkTokenEqual with Info compared as JSON: stores keep its
// meaning, not its layout (see TestFileStoreInfoVerbatim).
func fsTokenEqual(t *testing.T, got, want *Token) {
	t.Helper()
	g, w := *got, *want
	g.Info, w.Info = fsCompact(t, g.Info), fsCompact(t, w.Info)
	tkTokenEqual(t, &g, &w)
}

func fsCompact(t *testing.T, b json.RawMessage) json.RawMessage {
	t.Helper()
	if b == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("Info %q is not JSON: %v", b, err)
	}
	return buf.Bytes()
}

func fsPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "token.json")
}

func TestFileStoreRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		tok  *Token
	}{
		{"every field", fsToken()},
		{"access only", &Token{AccessToken: "at-1"}},
		{"refresh only", &Token{RefreshToken: "rt-1"}},
		{"no info", &Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1", Expiry: epNow}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFileStore(fsPath(t))
			if err := fs.Save(t.Context(), tt.tok); err != nil {
				t.Fatalf("Save: %v", err)
			}
			got, err := fs.Load(t.Context())
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			fsTokenEqual(t, got, tt.tok)
			// A second store over the same file reads the same.
			got2, err := NewFileStore(fs.path).Load(t.Context())
			if err != nil {
				t.Fatalf("Load from a second FileStore: %v", err)
			}
			fsTokenEqual(t, got2, tt.tok)
		})
	}
}

func TestFileStoreInfoVerbatim(t *testing.T) {
	// Token.Info is documented as the response's info object verbatim; a
	// restart must not change its bytes.
	tests := []struct {
		name      string
		roundTrip func(t *testing.T, tok *Token) (*Token, error)
	}{
		{"FileStore", func(t *testing.T, tok *Token) (*Token, error) {
			fs := NewFileStore(fsPath(t))
			if err := fs.Save(t.Context(), tok); err != nil {
				return nil, err
			}
			return fs.Load(t.Context())
		}},
		{"marshalToken", func(t *testing.T, tok *Token) (*Token, error) {
			b, err := marshalToken(tok)
			if err != nil {
				return nil, err
			}
			return unmarshalToken(b)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := fsToken()
			got, err := tt.roundTrip(t, tok)
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			if !bytes.Equal(got.Info, tok.Info) {
				t.Errorf("BUG: Info after a round trip = %q, want the saved bytes %q", got.Info, tok.Info)
			}
		})
	}
}

func TestFileStoreSaveReplaces(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	first := &Token{AccessToken: "at-1", RefreshToken: "rt-1"}
	second := &Token{AccessToken: "at-2", RefreshToken: "rt-2"}
	for _, tok := range []*Token{first, second} {
		if err := fs.Save(t.Context(), tok); err != nil {
			t.Fatalf("Save: %v", err)
		}
	}
	got, err := fs.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	fsTokenEqual(t, got, second)
}

func TestFileStoreSaveNil(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	if err := fs.Save(t.Context(), nil); err == nil {
		t.Errorf("Save(nil) = nil error, want one")
	}
	if _, err := os.Stat(fs.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat after Save(nil) = %v, want the file not to exist", err)
	}
}

func TestFileStoreMode(t *testing.T) {
	tests := []struct {
		name     string
		existing os.FileMode // 0 means no file before Save
	}{
		{name: "new file"},
		{name: "over a 0644 file", existing: 0o644},
		{name: "over a 0666 file", existing: 0o666},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFileStore(fsPath(t))
			if tt.existing != 0 {
				if err := os.WriteFile(fs.path, []byte("old"), tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(fs.path, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			if err := fs.Save(t.Context(), fsToken()); err != nil {
				t.Fatalf("Save: %v", err)
			}
			fi, err := os.Stat(fs.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("file mode = %#o, want 0600", got)
			}
		})
	}
}

func TestFileStoreMissing(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	tok, err := fs.Load(t.Context())
	if !errors.Is(err, ErrNoToken) {
		t.Errorf("Load of a missing file = %v, %v; want ErrNoToken", tok, err)
	}
}

// First run: the store's folder does not exist yet. Load and Lock report
// ErrNoToken and create nothing; Save creates the folder, private.
func TestFileStoreMissingFolder(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "a", "b", "token.json")
	fs := NewFileStore(path)
	if tok, err := fs.Load(t.Context()); !errors.Is(err, ErrNoToken) {
		t.Errorf("Load() in a missing folder = %v, %v; want ErrNoToken", tok, err)
	}
	if l, err := fs.Lock(t.Context()); !errors.Is(err, ErrNoToken) {
		if l != nil {
			l.Unlock(t.Context())
		}
		t.Errorf("Lock() in a missing folder = %v; want ErrNoToken", err)
	}
	if _, err := os.Stat(filepath.Join(base, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load or Lock created the folder (Stat: %v)", err)
	}
	src := NewSource(Config{TokenURL: "http://127.0.0.1:1/tokens"}, fs)
	if _, err := src.Token(t.Context()); !errors.Is(err, ErrNoToken) {
		t.Errorf("Source.Token() over a missing folder = %v; want ErrNoToken", err)
	}
	src.Close()

	if err := fs.Save(t.Context(), fsToken()); err != nil {
		t.Fatalf("Save() in a missing folder: %v", err)
	}
	for _, dir := range []string{filepath.Join(base, "a"), filepath.Dir(path)} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("folder %s mode = %#o, want 0700", dir, got)
		}
	}
	got, err := fs.Load(t.Context())
	if err != nil {
		t.Fatalf("Load() after Save: %v", err)
	}
	fsTokenEqual(t, got, fsToken())
	l, err := fs.Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock() after Save: %v", err)
	}
	l.Unlock(t.Context())
}

func TestFileStoreCorrupt(t *testing.T) {
	t.Parallel() // waits on the disk; touches nothing shared
	valid, err := os.ReadFile(fsSaved(t, fsToken()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"whitespace", []byte(" \n\t ")},
		{"garbage", []byte("\x00\x01garbage AT-FILE-1a2b RT-FILE-3c4d")},
		{"truncated", valid[:len(valid)/2]},
		{"truncated at end", valid[:len(valid)-2]},
		{"json array", []byte(`[{"access_token":"AT-FILE-1a2b"}]`)},
		{"plain token json", []byte(`{"access_token":"AT-FILE-1a2b","refresh_token":"RT-FILE-3c4d"}`)},
		{"unknown version", bytes.Replace(valid, []byte(`"version": 1`), []byte(`"version": 2`), 1)},
		{"no version", bytes.Replace(valid, []byte(`"version": 1,`), nil, 1)},
		{"wrong type", []byte(`{"version":1,"token":{"access_token":["AT-FILE-1a2b"],"refresh_token":"RT-FILE-3c4d"}}`)},
		{"header injection", []byte(`{"version":1,"token":{"access_token":"AT-FILE-1a2b\r\nX: y","refresh_token":"RT-FILE-3c4d"}}`)},
		{"no tokens", []byte(`{"version":1,"token":{"token_type":"Bearer"}}`)},
		{"over maxFile", append(bytes.Repeat([]byte(" "), maxFile), valid...)},
		{"maxFile+1 bytes", append(bytes.Repeat([]byte(" "), maxFile+1-len(valid)), valid...)},
		{"trailing garbage", append(append([]byte{}, valid...), []byte("}} RT-FILE-3c4d")...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFileStore(fsPath(t))
			if err := os.WriteFile(fs.path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			tok, err := fs.Load(t.Context())
			if err == nil {
				t.Fatalf("Load = %v, want an error", tok)
			}
			if errors.Is(err, ErrNoToken) {
				t.Errorf("Load error = %v, want one that is not ErrNoToken", err)
			}
			for _, s := range []string{"AT-FILE-1a2b", "RT-FILE-3c4d"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("Load error = %q, holds the secret %q", err, s)
				}
			}
		})
	}
}

// fsSaved saves tok in a new FileStore and returns its path.
func fsSaved(t *testing.T, tok *Token) string {
	t.Helper()
	fs := NewFileStore(fsPath(t))
	if err := fs.Save(t.Context(), tok); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return fs.path
}

func TestFileStoreIsDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := NewFileStore(dir).Load(t.Context())
	if err == nil || errors.Is(err, ErrNoToken) {
		t.Errorf("Load of a directory = %v, want an error that is not ErrNoToken", err)
	}
}

func TestFileStoreSourceNeverOverwritesCorrupt(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("not a token file AT-FILE-1a2b")},
		{"empty", []byte{}},
		{"truncated", []byte(`{"version":1,"token":{"access_token":"AT-FILE-1a2b","refresh_tok`)},
		{"unknown version", []byte(`{"version":9,"token":{"access_token":"AT-FILE-1a2b","refresh_token":"RT-FILE-3c4d"}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, mt := epConfig(epJSON(200, epTokenBody))
			fs := NewFileStore(fsPath(t))
			if err := os.WriteFile(fs.path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			src := NewSource(cfg, fs)
			defer src.Close()
			tok, err := src.Token(t.Context())
			if err == nil {
				t.Fatalf("Token() = %v, want an error", tok)
			}
			if errors.Is(err, ErrNoToken) {
				t.Errorf("Token() error = %v, want one that is not ErrNoToken", err)
			}
			if n := mt.GetTotalCallCount(); n != 0 {
				t.Errorf("requests = %d, want 0", n)
			}
			if err := src.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			got, err := os.ReadFile(fs.path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("file = %q after Token, want it unchanged: %q", got, tt.data)
			}
		})
	}
}

func TestFileStoreSourceRefreshes(t *testing.T) {
	cfg, mt := epConfig(epJSON(200, epTokenBody))
	fs := NewFileStore(fsPath(t))
	if err := fs.Save(t.Context(), &Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: epNow.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	src := NewSource(cfg, fs)
	defer src.Close()
	tok, err := src.Token(t.Context())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if tok.AccessToken != "at-new" {
		t.Errorf("AccessToken = %q, want %q", tok.AccessToken, "at-new")
	}
	if n := mt.GetTotalCallCount(); n != 1 {
		t.Errorf("requests = %d, want 1", n)
	}
	saved, err := fs.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	fsTokenEqual(t, saved, tok)
	fsNoTemp(t, filepath.Dir(fs.path))
}

// fsNoTemp fails if dir holds anything but token files and lock files.
func fsNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); n != "token.json" && n != "token.json.lock" {
			t.Errorf("folder holds %q, want only token.json and its lock", n)
		}
	}
}

func TestFileStoreNoTempFiles(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	for i := range 5 {
		tok := fsToken()
		tok.AccessToken += string(rune('a' + i))
		if err := fs.Save(t.Context(), tok); err != nil {
			t.Fatalf("Save %d: %v", i, err)
		}
	}
	lease, err := fs.Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	old, err := lease.Load(t.Context())
	if err != nil {
		t.Fatalf("lease Load: %v", err)
	}
	if _, err := lease.Begin(t.Context(), old); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := lease.CompareAndSwap(t.Context(), old, &Token{AccessToken: "at-9", RefreshToken: "rt-9"}); err != nil {
		t.Fatalf("CompareAndSwap: %v", err)
	}
	if err := lease.Unlock(t.Context()); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	fsNoTemp(t, filepath.Dir(fs.path))
}

func TestFileStoreSaveFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// The path is a directory: the rename over it fails after the temp
	// file was written.
	path := filepath.Join(dir, "token.json")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := NewFileStore(path).Save(t.Context(), fsToken()); err == nil {
		t.Fatalf("Save over a non-empty directory = nil error, want one")
	}
	fsNoTemp(t, dir)
}

// fzKey is the AES-256 key of the sealed file stores.
var fzKey = bytes.Repeat([]byte{0x42}, 32)

func FuzzFileStoreLoad(f *testing.F) {
	for _, s := range fzFileSeeds {
		f.Add([]byte(s))
	}
	codec, err := NewAESGCM(fzKey)
	if err != nil {
		f.Fatal(err)
	}
	wrong, err := NewAESGCM(bytes.Repeat([]byte{0x24}, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := t.Context()
		dir := t.TempDir()
		path := filepath.Join(dir, "token.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		secrets := fzSecretRuns(data)

		// The same bytes under a Codec never open: they were not sealed.
		sealedStore := &FileStore{Codec: codec, path: path}
		if tok, err := sealedStore.Load(ctx); err == nil {
			t.Errorf("sealed Load of unsealed bytes = %v, want an error", tok)
		} else {
			if len(bytes.TrimSpace(data)) > 0 && !errors.Is(err, ErrDecrypt) {
				t.Errorf("sealed Load of unsealed bytes: error %v, want ErrDecrypt", err)
			}
			fzNoLeak(t, "sealed Load", err, secrets, path)
		}

		fs := NewFileStore(path)
		tok, err := fs.Load(ctx)
		if err != nil {
			if tok != nil {
				t.Errorf("Load = %v, %v; want no token with an error", tok, err)
			}
			// Only a record without a token (as Begin leaves on an empty
			// store) reads as empty; a corrupt file never does.
			var rec fileRecord
			empty := json.Unmarshal(data, &rec) == nil && rec.Version == 1 && rec.Token == (storedToken{})
			if errors.Is(err, ErrNoToken) && !empty {
				t.Errorf("Load of an existing file: error %v is ErrNoToken; a corrupt file must not read as empty", err)
			}
			fzNoLeak(t, "Load", err, secrets, path)
			return
		}
		if tok.AccessToken == "" && tok.RefreshToken == "" {
			t.Errorf("Load = %v: neither an access nor a refresh token", tok)
		}
		for _, s := range []string{tok.AccessToken, tok.TokenType} {
			if !fzHeaderSafe(s) {
				t.Errorf("Load = a token holding %q, not header-safe", s)
			}
		}
		if !vschar(tok.RefreshToken) {
			t.Errorf("Load = a refresh token %q, not VSCHAR", tok.RefreshToken)
		}

		if err := fs.Save(ctx, tok); err != nil {
			t.Fatalf("Save of a loaded token: %v", err)
		}
		again, err := fs.Load(ctx)
		if err != nil {
			t.Fatalf("Load after Save: %v", err)
		}
		fzSameToken(t, "Load after Save", again, tok)

		// Sealed, the token round-trips too, and only the right key opens it.
		spath := filepath.Join(dir, "sealed.json")
		ss := &FileStore{Codec: codec, path: spath}
		if err := ss.Save(ctx, tok); err != nil {
			t.Fatalf("sealed Save: %v", err)
		}
		if got, err := ss.Load(ctx); err != nil {
			t.Errorf("sealed Load after Save: %v", err)
		} else {
			fzSameToken(t, "sealed Load after Save", got, tok)
		}
		if got, err := (&FileStore{Codec: wrong, path: spath}).Load(ctx); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Load with the wrong key = %v, %v; want ErrDecrypt", got, err)
		}
		if got, err := NewFileStore(spath).Load(ctx); err == nil {
			t.Errorf("plain Load of a sealed file = %v, want an error", got)
		}
	})
}
