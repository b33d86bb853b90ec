package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/tokenkit/bearer"
)

// headerList collects repeated -H flags.
type headerList []string

func (h *headerList) String() string { return strings.Join(*h, ", ") }

func (h *headerList) Set(v string) error {
	k, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return errors.New("want 'Key: Value'")
	}
	*h = append(*h, v)
	return nil
}

func (a *app) request(ctx context.Context, args []string) int {
	fs := a.flagSet("request", "[-X METHOD] [-H 'Key: Value']... [-d BODY] [flags] URL")
	method := fs.String("X", "", "request `method` (default GET, or POST with -d)")
	var headers headerList
	fs.Var(&headers, "H", "request `header` 'Key: Value'; repeatable")
	data := fs.String("d", "", "request `body`; @FILE reads a file and @- standard input. Content-Type defaults to application/json for a JSON body")
	store := storeFlag(fs)
	cf := addClientFlags(fs)
	// Flags may follow the URL, as with curl.
	var urls []string
	for {
		if code, ok := parse(fs, args); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		urls = append(urls, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(urls) != 1 {
		return a.usageError(fs, "want one URL, got %d", len(urls))
	}
	u, err := url.Parse(urls[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return a.usageError(fs, "%q is not an http or https URL", urls[0])
	}
	path, err := a.storePath(*store)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}

	var body []byte
	switch {
	case *data == "@-":
		body, err = io.ReadAll(a.stdin)
	case strings.HasPrefix(*data, "@"):
		body, err = os.ReadFile((*data)[1:])
	default:
		body = []byte(*data)
	}
	if err != nil {
		return a.usageError(fs, "reading the body: %v", err)
	}
	if *method == "" {
		*method = http.MethodGet
		if *data != "" {
			*method = http.MethodPost
		}
	}
	// A bytes.Reader gives the request GetBody, so that the Transport can
	// replay the body after a 401.
	var rd io.Reader
	if *data != "" {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, *method, u.String(), rd)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Add(k, v)
	}
	if *data != "" && req.Header.Get("Content-Type") == "" && json.Valid(body) {
		req.Header.Set("Content-Type", "application/json")
	}

	cfg := a.config(cf)
	w := a.newWaits(&cfg, path, cf.verbose)
	src := bearer.NewSource(cfg, bearer.NewFileStore(path))
	tr := &bearer.Transport{Source: src, Base: w.base(req)}
	client := &http.Client{Transport: tr}
	code := a.send(client, req, path)
	w.stop()
	tr.CloseIdleConnections()
	if err := a.closeSource(ctx, src, path); err != nil && code == exitOK {
		return a.fail(fmt.Errorf("the new token could not be saved to %s, and the refresh token it replaced is spent: %w", path, err), path)
	}
	return code
}

// send does req and copies the response body to stdout.
func (a *app) send(client *http.Client, req *http.Request, store string) int {
	resp, err := client.Do(req)
	if err != nil {
		return a.fail(err, store)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(a.stdout, resp.Body); err != nil {
		return a.fail(fmt.Errorf("reading the response: %w", err), store)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(a.stderr, "bearer: %s %s\n", resp.Proto, resp.Status)
		return exitFailure
	}
	return exitOK
}
