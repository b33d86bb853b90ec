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
	t.Parallel() // waits on the disk; touches nothing shared
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

// TestFileStoreSizeLimit saves a token whose file is exactly maxFile bytes
// and one a byte larger. Each 4 MiB pass is slow under the race detector
// (about half a second), so each boundary is crossed once, where it can
// break: Save and Load at the limit on a plain file; one byte past it on a
// sealed file (a check made before sealing would let the file grow past
// the limit), through a lease, as a Source saves. Save and the lease write
// through the same check.
func TestFileStoreSizeLimit(t *testing.T) {
	t.Parallel() // 4 MiB passes: slow under the race detector
	codec, err := NewAESGCM(ccKey(3))
	if err != nil {
		t.Fatal(err)
	}
	// atLimit returns the tokens whose file with codec is maxFile bytes
	// and one byte more: past indentBelow a file grows by one byte per
	// byte of Info.
	atLimit := func(t *testing.T, codec Codec) (at, past *Token) {
		n0 := 2 * indentBelow
		n := n0 + maxFile - fsFileSize(t, codec, fsInfoToken(n0))
		return fsInfoToken(n), fsInfoToken(n + 1)
	}
	// refused fails unless err refuses a file of maxFile+1 bytes.
	refused := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnstorable) {
			t.Fatalf("saving a token one byte past the limit = %v, want ErrUnstorable", err)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(maxFile+1)) {
			t.Errorf("error = %q, want it to name the size %d", err, maxFile+1)
		}
	}

	plain := func(t *testing.T) {
		at, _ := atLimit(t, nil)
		fs := NewFileStore(fsPath(t))
		if err := fs.Save(t.Context(), at); err != nil {
			t.Fatalf("Save of a token whose file is %d bytes: %v", maxFile, err)
		}
		if fi, err := os.Stat(fs.path); err != nil || fi.Size() != maxFile {
			t.Fatalf("file = %v, %v; want exactly %d bytes", fi.Size(), err, maxFile)
		}
		got, err := NewFileStore(fs.path).Load(t.Context())
		if err != nil {
			t.Fatalf("Load of a file at the limit: %v", err)
		}
		if got.RefreshToken != at.RefreshToken || string(got.Info) != string(at.Info) {
			t.Errorf("Load of a file at the limit = another token")
		}
	}

	sealedPast := func(t *testing.T) {
		_, past := atLimit(t, codec)
		fs := &FileStore{Codec: codec, path: fsPath(t)}
		small := fsToken()
		if err := fs.Save(t.Context(), small); err != nil {
			t.Fatal(err)
		}
		before, err := os.ReadFile(fs.path)
		if err != nil {
			t.Fatal(err)
		}
		lease, err := fs.Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		refused(t, lease.CompareAndSwap(t.Context(), small, past))
		if err := lease.Unlock(t.Context()); err != nil {
			t.Fatal(err)
		}
		fsUnchanged(t, fs, before)
	}

	// CPU-bound, on two cores when they are free.
	sideBySide(t, subtest{"plain, at the limit", plain}, subtest{"sealed, past the limit", sealedPast})
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

// unstorableTokens are tokens that Load (and unmarshalToken) would refuse
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
				t.Errorf("marshalToken = %q, %v; want ErrUnstorable", b, err)
			}
		})
	}
}
