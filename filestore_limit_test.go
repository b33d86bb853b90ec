package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What FileStore writes, it reads: a token it would not read back is
// refused before the old file is replaced.

// TestFileStoreKeepsLargeAnswer is the answer of issue 14: an info of
// 200,000 '<' (1.2 MB once JSON escapes each as \u003c) arrives over HTTP,
// is saved, and a new FileStore reads it back.
func TestFileStoreKeepsLargeAnswer(t *testing.T) {
	info := `"` + strings.Repeat("<", 200_000) + `"`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3600,"access_token":"at-2","refresh_token":"rt-2","info":%s}`, info)
	}))
	defer srv.Close()
	fs := NewFileStore(fsPath(t))
	if err := fs.Save(t.Context(), &Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var saveErr error
	src := NewSource(Config{TokenURL: srv.URL, Hooks: Hooks{SaveFailed: func(_ context.Context, err error) { saveErr = err }}}, fs)
	tok, err := src.Token(t.Context())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("Close: %v (SaveFailed: %v)", err, saveErr)
	}
	got, err := NewFileStore(fs.path).Load(t.Context())
	if err != nil {
		t.Fatalf("Load of the saved answer: %v", err)
	}
	if got.RefreshToken != "rt-2" || string(got.Info) != info || got.RefreshToken != tok.RefreshToken {
		t.Errorf("Load = refresh token %q, %d bytes of info; want rt-2 and the answer's %d", got.RefreshToken, len(got.Info), len(info))
	}
	if fi, err := os.Stat(fs.path); err == nil {
		t.Logf("an answer with %d bytes of info is a file of %d bytes", len(info), fi.Size())
	}
}

// fsInfoToken is fsToken with an Info of n '<'.
func fsInfoToken(n int) *Token {
	tok := fsToken()
	tok.Info = json.RawMessage(`"` + strings.Repeat("<", n) + `"`)
	return tok
}

// fsFileSize saves tok in a scratch FileStore with codec and returns the
// file's size.
func fsFileSize(t *testing.T, codec Codec, tok *Token) int {
	t.Helper()
	fs := &FileStore{Codec: codec, path: fsPath(t)}
	if err := fs.Save(t.Context(), tok); err != nil {
		t.Fatalf("Save: %v", err)
	}
	fi, err := os.Stat(fs.path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

func TestFileStoreSizeLimit(t *testing.T) {
	t.Parallel() // waits on real time or the disk; touches nothing shared
	codec, err := NewAESGCM(ccKey(3))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		codec Codec
	}{{"plain", nil}, {"sealed", codec}} {
		t.Run(tt.name, func(t *testing.T) {
			// A file past indentBelow grows by one byte per byte of Info.
			n0 := 2 * indentBelow
			n := n0 + maxFile - fsFileSize(t, tt.codec, fsInfoToken(n0))
			atLimit, past := fsInfoToken(n), fsInfoToken(n+1)

			fs := &FileStore{Codec: tt.codec, path: fsPath(t)}
			if err := fs.Save(t.Context(), atLimit); err != nil {
				t.Fatalf("Save of a token whose file is %d bytes: %v", maxFile, err)
			}
			if fi, err := os.Stat(fs.path); err != nil || fi.Size() != maxFile {
				t.Fatalf("file = %v, %v; want exactly %d bytes", fi.Size(), err, maxFile)
			}
			got, err := fs.Load(t.Context())
			if err != nil {
				t.Fatalf("Load of a file at the limit: %v", err)
			}
			if got.RefreshToken != atLimit.RefreshToken || string(got.Info) != string(atLimit.Info) {
				t.Errorf("Load of a file at the limit = another token")
			}

			// Past the limit, over a small token (one less 4 MiB read).
			small := fsToken()
			if err := fs.Save(t.Context(), small); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(fs.path)
			if err != nil {
				t.Fatal(err)
			}
			err = fs.Save(t.Context(), past)
			if !errors.Is(err, ErrUnstorable) {
				t.Fatalf("Save of a token one byte past the limit = %v, want ErrUnstorable", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(maxFile+1)) {
				t.Errorf("Save error = %q, want it to name the size %d", err, maxFile+1)
			}
			// Through a lease, as a Source saves, too.
			lease, err := fs.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := lease.CompareAndSwap(t.Context(), small, past); !errors.Is(err, ErrUnstorable) {
				t.Errorf("CompareAndSwap to a token past the limit = %v, want ErrUnstorable", err)
			}
			if err := lease.Unlock(t.Context()); err != nil {
				t.Fatal(err)
			}
			fsUnchanged(t, fs, before)
		})
	}
}

// fsUnchanged fails unless fs's file still holds before and nothing else
// was left in its folder.
func fsUnchanged(t *testing.T, fs *FileStore, before []byte) {
	t.Helper()
	after, err := os.ReadFile(fs.path)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("the refused save changed the file")
	}
	fsNoTemp(t, filepath.Dir(fs.path))
}

// unstorableTokens are tokens that Load (and UnmarshalToken) would refuse
// or read back changed.
var unstorableTokens = []struct {
	name string
	tok  *Token
}{
	{"control character", &Token{AccessToken: "at-1\r\nX-Injected: 1", RefreshToken: "rt-1"}},
	{"control character in the refresh token", &Token{AccessToken: "at-1", RefreshToken: "rt\x011"}},
	{"space in the type", &Token{AccessToken: "at-1", TokenType: "Bearer x"}},
	{"info not JSON", &Token{AccessToken: "at-1", Info: json.RawMessage(`{"a":`)}},
	{"empty info", &Token{AccessToken: "at-1", Info: json.RawMessage{}}},
	{"no tokens", &Token{TokenType: "Bearer", Expiry: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)}},
	{"refresh token not UTF-8", &Token{AccessToken: "at-1", RefreshToken: "rt-\xff"}},
	{"info not UTF-8", &Token{AccessToken: "at-1", Info: json.RawMessage("\"\xff\"")}},
	{"year 10000", &Token{AccessToken: "at-1", Expiry: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
}

func TestFileStoreRefusesWhatLoadRefuses(t *testing.T) {
	for _, tt := range unstorableTokens {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFileStore(fsPath(t))
			if err := fs.Save(t.Context(), fsToken()); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(fs.path)
			if err != nil {
				t.Fatal(err)
			}
			if err := fs.Save(t.Context(), tt.tok); !errors.Is(err, ErrUnstorable) {
				t.Errorf("Save = %v, want ErrUnstorable", err)
			}
			fsUnchanged(t, fs, before)
			if b, err := marshalToken(tt.tok); !errors.Is(err, ErrUnstorable) {
				t.Errorf("MarshalToken = %q, %v; want ErrUnstorable", b, err)
			}
		})
	}
}
