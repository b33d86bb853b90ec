package bearer_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/tokenkit/bearer"
)

// exampleSource is a TokenSource with a fixed token. It stands in for a
// [bearer.Source] from [bearer.NewSource], which refreshes and persists.
type exampleSource struct{ tok *bearer.Token }

func (s exampleSource) Token(context.Context) (*bearer.Token, error) { return s.tok, nil }

func ExampleTransport() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer example-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "hello, authorized client")
	}))
	defer api.Close()

	src := exampleSource{&bearer.Token{AccessToken: "example-token"}}
	client := &http.Client{Transport: &bearer.Transport{Source: src}}

	resp, err := client.Get(api.URL + "/hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Println(string(body))
	// Output:
	// 200 OK
	// hello, authorized client
}

// retry5xx stands in for a retrying transport, such as one from a retry
// library: it sends a request up to three times while the server answers
// with a 5xx status.
type retry5xx struct{ base http.RoundTripper }

func (t retry5xx) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		resp, err := t.base.RoundTrip(req)
		if err != nil || resp.StatusCode < 500 || attempt == 3 || req.Body != nil {
			return resp, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// Bearer's Transport goes outside a retrying transport: the retries of a
// 503 reuse the header it set, and a 401 is retried by bearer alone, once,
// after a refresh.
func Example_transport() {
	attempts := 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts++
		fmt.Printf("attempt %d: authorized %v\n", attempts, r.Header.Get("Authorization") == "Bearer example-token")
		if attempts == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer api.Close()

	client := &http.Client{Transport: &bearer.Transport{
		Source: exampleSource{&bearer.Token{AccessToken: "example-token"}},
		Base:   retry5xx{base: http.DefaultTransport},
	}}
	resp, err := client.Get(api.URL + "/report")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// attempt 1: authorized true
	// attempt 2: authorized true
	// 200 OK
}
