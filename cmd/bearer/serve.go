package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// serve runs bearertest as a fake OpenTicket until interrupted, for trying
// bearer (or any OAuth client) outside Go tests.
func (a *app) serve(ctx context.Context, args []string) int {
	fs := a.flagSet("serve", "[--addr HOST:PORT] [--tls [--cert FILE]] [--consent] [--fault SPEC]... [flags]")
	addr := fs.String("addr", "127.0.0.1:9400", "`address` to listen on (port 0 picks a free one)")
	useTLS := fs.Bool("tls", false, "serve https with a self-signed certificate made at start")
	certFile := fs.String("cert", "", "with --tls, write the certificate (PEM) to `file` instead of printing it")
	id := fs.String("client-id", "bearer-demo", "the client `ID` the server accepts")
	secret := fs.String("client-secret", "", "the client `secret` the server accepts (default a random one, printed)")
	var cfg bearertest.Config
	fs.BoolVar(&cfg.Consent, "consent", false, "show a consent page at the authorization and verification endpoints instead of approving at once")
	fs.DurationVar(&cfg.AccessLifetime, "access-lifetime", time.Hour, "how long access tokens live")
	fs.DurationVar(&cfg.RefreshLifetime, "refresh-lifetime", 24*time.Hour, "how long refresh tokens live")
	fs.DurationVar(&cfg.Latency, "latency", 0, "delay of every token endpoint request")
	fs.BoolVar(&cfg.Lenient, "lenient", false, "do not revoke a family when a spent refresh token is presented again")
	fs.DurationVar(&cfg.ReuseGrace, "reuse-grace", 0, "how long after a rotation a spent refresh token is answered with the pair already issued")
	fs.BoolVar(&cfg.FormResponses, "form-responses", false, "answer token requests form-encoded instead of JSON")
	fs.DurationVar(&cfg.DeviceInterval, "device-interval", 5*time.Second, "the polling interval the device endpoint asks for")
	var faults faultList
	fs.Var(&faults, "fault", "misbehave at the next token requests, as `SPEC` says: comma-separated status=503, count=N, delay=D, retry-after=D, trickle=D, huge=BYTES, body=TEXT, truncate, reset, consume; repeatable, applied in order")
	if code, ok := a.parseFlags(fs, args); !ok {
		return code
	}
	cfg.ClientID, cfg.ClientSecret = *id, *secret
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = rand.Text()
	}
	if cfg.AccessLifetime < time.Second || cfg.RefreshLifetime < time.Second {
		return a.usageError(fs, "lifetimes must be at least 1s")
	}
	if *certFile != "" && !*useTLS {
		return a.usageError(fs, "--cert needs --tls")
	}

	srv := bearertest.NewUnstartedServer(cfg)
	defer srv.Close()
	for _, f := range faults {
		srv.InjectFault(f)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(a.stderr, "bearer: cannot listen on %s: %v (--addr picks another address; port 0 a free one)\n", *addr, err)
		return exitFailure
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	scheme := "http"
	if *useTLS {
		scheme = "https"
		cert, pemBytes, err := selfSigned(ln.Addr())
		if err == nil && *certFile != "" {
			err = os.WriteFile(*certFile, pemBytes, 0o644)
		}
		if err != nil {
			ln.Close()
			return a.fail(fmt.Errorf("the TLS certificate: %w", err), "")
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, hs.TLSConfig)
		if *certFile == "" {
			fmt.Fprintf(a.stdout, "%s\n", pemBytes)
		}
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	a.serving(scheme+"://"+shownAddr(ln.Addr()), cfg, *certFile)

	select {
	case <-ctx.Done():
	case err := <-served:
		return a.fail(fmt.Errorf("serving: %w", err), "")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return a.fail(fmt.Errorf("serving: %w", err), "")
	}
	fmt.Fprintln(a.stderr, "bearer: stopped")
	return exitOK
}

// serving says where the server is and how to use it. It prints the
// client secret: it is the fake server's, made up for this run.
func (a *app) serving(base string, cfg bearertest.Config, certFile string) {
	w := a.stdout
	fmt.Fprintf(w, "bearer serve: a fake OpenTicket for trying bearer; nothing it issues is real.\n\n")
	fmt.Fprintf(w, "  token endpoint:          %s/tokens\n", base)
	fmt.Fprintf(w, "  authorization endpoint:  %s/authorize\n", base)
	fmt.Fprintf(w, "  device endpoint:         %s/device\n", base)
	fmt.Fprintf(w, "  revocation endpoint:     %s/revoke\n", base)
	fmt.Fprintf(w, "  protected API:           %s/api/\n", base)
	fmt.Fprintf(w, "  client ID:               %s\n", cfg.ClientID)
	fmt.Fprintf(w, "  client secret:           %s\n\n", cfg.ClientSecret)
	fmt.Fprintf(w, "In another terminal:\n\n")
	env := fmt.Sprintf("export OAUTH_TOKEN_URL=%s/tokens OAUTH_AUTH_URL=%s/authorize OAUTH_DEVICE_AUTH_URL=%s/device OAUTH_REVOCATION_URL=%s/revoke OAUTH_CLIENT_ID=%s OAUTH_CLIENT_SECRET=%s",
		base, base, base, base, cfg.ClientID, cfg.ClientSecret)
	if certFile != "" {
		env += " SSL_CERT_FILE=" + certFile
	}
	fmt.Fprintf(w, "  %s\n  bearer login\n  bearer request %s/api/hello\n\n", env, base)
	fmt.Fprintf(a.stderr, "bearer: serving on %s until interrupted (Ctrl-C)\n", base)
}

// shownAddr is addr as a client reaches it: a wildcard address is reached
// on loopback.
func shownAddr(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// selfSigned makes a certificate for loopback and addr's host, valid for
// thirty days, and returns it with its PEM, which a client trusts.
func selfSigned(addr net.Addr) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "bearer serve"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(addr.String()); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes, nil
}

// faultList collects --fault specs.
type faultList []bearertest.Fault

func (l *faultList) String() string { return fmt.Sprintf("%d faults", len(*l)) }

func (l *faultList) Set(spec string) error {
	f, err := parseFault(spec)
	if err != nil {
		return err
	}
	*l = append(*l, f)
	return nil
}

var _ flag.Value = (*faultList)(nil)

// parseFault reads a fault spec: comma-separated key=value settings and
// bare switches, named as bearertest.Fault's fields are.
func parseFault(spec string) (bearertest.Fault, error) {
	var f bearertest.Fault
	for _, part := range strings.Split(spec, ",") {
		k, v, hasValue := strings.Cut(strings.TrimSpace(part), "=")
		var err error
		switch k {
		case "status":
			f.Status, err = strconv.Atoi(v)
		case "count":
			f.Count, err = strconv.Atoi(v)
		case "huge":
			f.HugeBody, err = strconv.ParseInt(v, 10, 64)
		case "delay":
			f.Delay, err = time.ParseDuration(v)
		case "retry-after":
			f.RetryAfter, err = time.ParseDuration(v)
		case "trickle":
			f.Trickle, err = time.ParseDuration(v)
		case "body":
			f.Body = v
		case "truncate", "reset", "consume":
			if hasValue {
				return f, fmt.Errorf("%s takes no value", k)
			}
			f.Truncate = f.Truncate || k == "truncate"
			f.Reset = f.Reset || k == "reset"
			f.Consume = f.Consume || k == "consume"
		default:
			return f, fmt.Errorf("unknown fault setting %q", k)
		}
		if err != nil {
			return f, fmt.Errorf("fault setting %s: %v", k, err)
		}
	}
	return f, nil
}
