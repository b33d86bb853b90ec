package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// served is a bearer serve running in the background.
type served struct {
	stdout, stderr *notifyWriter
	env            map[string]string // what its export line sets
	stop           context.CancelFunc
	done           <-chan int
}

func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	s := &served{stdout: &notifyWriter{changed: make(chan struct{}, 1)}, stderr: &notifyWriter{changed: make(chan struct{}, 1)}, stop: stop}
	a := &app{stdin: strings.NewReader(""), stdout: s.stdout, stderr: s.stderr,
		env: func(string) string { return "" }, now: time.Now}
	done := make(chan int, 1)
	s.done = done
	go func() { done <- a.run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)) }()
	t.Cleanup(func() {
		stop()
		<-s.done
	})
	s.env = map[string]string{}
	for _, kv := range strings.Fields(s.stdout.waitFor("export ")) {
		k, v, _ := strings.Cut(kv, "=")
		s.env[k] = v
	}
	return s
}

// readmeFirstToken returns the commands of the README's "Your first
// token", before it turns to OpenTicket, as argument lists.
func readmeFirstToken(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Your first token\n")
	sec, _, _ = strings.Cut(sec, "The same against OpenTicket")
	if !ok {
		t.Fatal(`README.md has no "## Your first token"`)
	}
	var cmds [][]string
	for _, line := range strings.Split(sec, "\n") {
		line, _, _ = strings.Cut(line, " #")
		if f := strings.Fields(line); len(f) > 0 && f[0] == "bearer" {
			cmds = append(cmds, f[1:])
		}
	}
	return cmds
}

// The README's "Your first token", as written there, on a fresh machine:
// bearer serve in one terminal; bearer login and bearer request in another,
// with the export line serve printed in the environment.
func TestFirstToken(t *testing.T) {
	t.Parallel()
	cmds := readmeFirstToken(t)
	if len(cmds) != 3 || cmds[0][0] != "serve" || cmds[1][0] != "login" || cmds[2][0] != "request" {
		t.Fatalf("README's first token = %q, want serve, login and request", cmds)
	}
	// Tests use no fixed port: serve's default address is replaced.
	const readmeAddr = "127.0.0.1:9400"
	s := startServe(t, cmds[0][1:]...)
	addr := strings.TrimPrefix(strings.TrimSuffix(s.env["OAUTH_TOKEN_URL"], "/tokens"), "http://")
	home := t.TempDir() // nothing in it: no ~/.config yet
	env := map[string]string{"HOME": home}
	for k, v := range s.env {
		env[k] = v
	}
	b := newBrowser(t, func(b *browser, u string) { b.get(u) })
	cli := func(args ...string) result {
		var out, errOut bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
			env: func(k string) string { return env[k] }, now: time.Now, open: b.open}
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], readmeAddr, addr)
		}
		code := a.run(t.Context(), args)
		return result{code, out.String(), errOut.String()}
	}
	if api := strings.ReplaceAll(cmds[2][1], readmeAddr, addr); !strings.Contains(s.stdout.String(), "bearer request "+api) {
		t.Errorf("serve's output does not show README's request %s:\n%s", api, s.stdout)
	}

	r := cli(cmds[2]...) // before login: the first run says what to do
	wantCode(t, r, exitReauthorize)
	if !strings.Contains(r.stderr, "no token stored: run bearer login or bearer import") {
		t.Errorf("request before login: stderr = %q, want it to say to log in", r.stderr)
	}
	wantCode(t, cli(cmds[1]...), exitOK)
	b.wg.Wait()
	r = cli(cmds[2]...)
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stdout, `"ok":true`) || !strings.Contains(r.stdout, `"path":"/api/hello"`) {
		t.Errorf("request stdout = %q, want the API's answer", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(home, ".config", "bearer", "token.json")); err != nil {
		t.Errorf("the default store: %v", err)
	}
	if r := cli("serve", "-h"); !strings.Contains(r.stderr, `(default "`+readmeAddr+`")`) {
		t.Errorf("serve's default address is not README's %s:\n%s", readmeAddr, r.stderr)
	}

	s.stop()
	if code := <-s.done; code != exitOK {
		t.Errorf("serve exit status = %d, want 0 after an interrupt", code)
	}
	s.done = closedDone()
}

// closedDone is a done channel for a serve already waited for.
func closedDone() <-chan int {
	c := make(chan int, 1)
	c <- exitOK
	return c
}

func TestServeTLS(t *testing.T) {
	t.Parallel()
	for _, written := range []bool{true, false} {
		name := "printed"
		if written {
			name = "written"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var args []string
			certFile := filepath.Join(t.TempDir(), "cert.pem")
			if written {
				args = []string{"--cert", certFile}
			}
			s := startServe(t, append([]string{"--tls"}, args...)...)
			var pemBytes []byte
			if written {
				var err error
				if pemBytes, err = os.ReadFile(certFile); err != nil {
					t.Fatal(err)
				}
				if s.env["SSL_CERT_FILE"] != certFile {
					t.Errorf("export line sets SSL_CERT_FILE=%q, want %q", s.env["SSL_CERT_FILE"], certFile)
				}
			} else {
				out := s.stdout.String()
				pemBytes = []byte(out[:strings.Index(out, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----")])
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemBytes) {
				t.Fatalf("no certificate in %q", pemBytes)
			}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
			if !strings.HasPrefix(s.env["OAUTH_TOKEN_URL"], "https://127.0.0.1:") {
				t.Fatalf("token URL %q is not https on loopback", s.env["OAUTH_TOKEN_URL"])
			}
			resp, err := client.Post(s.env["OAUTH_TOKEN_URL"], "application/json", strings.NewReader(`{"grant_type":"client_credentials","client_id":"`+s.env["OAUTH_CLIENT_ID"]+`","client_secret":"`+s.env["OAUTH_CLIENT_SECRET"]+`"}`))
			if err != nil {
				t.Fatalf("a token request over the served TLS: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "access_token") {
				t.Errorf("client_credentials = %d %s, want a token", resp.StatusCode, body)
			}
		})
	}
}

// Faults given as flags are queued for the first token requests; then the
// server answers as it would (401: no client credentials).
func TestServeFaults(t *testing.T) {
	t.Parallel()
	s := startServe(t, "--fault", "status=503,count=2,retry-after=1s", "--fault", "status=429")
	var got []int
	for range 4 {
		resp, err := http.Post(s.env["OAUTH_TOKEN_URL"], "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	if want := []int{503, 503, 429, 401}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("statuses = %v, want %v", got, want)
	}
}

func TestParseFault(t *testing.T) {
	tests := []struct {
		spec string
		want bearertest.Fault
		bad  bool
	}{
		{spec: "status=503", want: bearertest.Fault{Status: 503}},
		{spec: "status=200, consume, reset, count=3", want: bearertest.Fault{Status: 200, Consume: true, Reset: true, Count: 3}},
		{spec: "delay=2s,retry-after=1s,trickle=10ms,huge=2000000,truncate,body=oops", want: bearertest.Fault{
			Delay: 2 * time.Second, RetryAfter: time.Second, Trickle: 10 * time.Millisecond, HugeBody: 2000000, Truncate: true, Body: "oops"}},
		{spec: "status=five", bad: true},
		{spec: "explode", bad: true},
		{spec: "reset=yes", bad: true},
	}
	for _, tt := range tests {
		got, err := parseFault(tt.spec)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("parseFault(%q) = %+v, %v; want %+v, error %t", tt.spec, got, err, tt.want, tt.bad)
		}
	}
}

func TestServeRefuses(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"--addr", ln.Addr().String()}, exitFailure},
		{[]string{"--fault", "explode"}, exitUsage},
		{[]string{"--cert", "x.pem"}, exitUsage},
		{[]string{"--access-lifetime", "10ms"}, exitUsage},
	} {
		f := newFixture(t, bearertest.Config{})
		r := f.run(t, "", append([]string{"serve"}, tt.args...)...)
		if r.code != tt.want {
			t.Errorf("serve %q: exit status %d, want %d\n%s", tt.args, r.code, tt.want, r.stderr)
		}
	}
}
