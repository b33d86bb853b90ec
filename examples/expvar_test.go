package examples_test

import (
	"context"
	"expvar"
	"fmt"
	"net/http"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// expvar, in the standard library, publishes variables as JSON at
// /debug/vars. Hooks count events as they happen; an expvar.Func reads
// Source.Stats when the page is served.
func Example_expvar() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()

	// In a program: vars := expvar.NewMap("bearer"), which also publishes
	// it. Publishing twice panics, so this example keeps it private.
	vars := new(expvar.Map).Init()
	src, _ := newSource(srv, bearer.Config{Hooks: bearer.Hooks{
		// Hooks run on the goroutine doing the work: keep them quick.
		RefreshFinished: func(_ context.Context, _ time.Duration, err error) {
			if err != nil {
				vars.Add("refresh_errors", 1)
				return
			}
			vars.Add("refreshes", 1)
		},
		TokenRejected: func(context.Context) { vars.Add("tokens_rejected", 1) },
		Reauthorize:   func(context.Context, error) { vars.Add("reauthorize", 1) },
	}})
	defer src.Close()
	vars.Set("stats", expvar.Func(func() any {
		st := src.Stats()
		return map[string]int64{
			"refreshes":     st.Refreshes,
			"failures":      st.Failures,
			"adopted":       st.Adopted,
			"rejected":      st.Rejected,
			"save_failures": st.SaveFailures,
		}
	}))

	client := &http.Client{Transport: &bearer.Transport{Source: src, Base: srv.Client().Transport}}
	get(client, srv.APIURL()+"hello") // refreshes the expired token
	tok, _ := src.Token(context.Background())
	srv.RevokeAccess(tok.AccessToken)
	get(client, srv.APIURL()+"hello") // 401, refresh, resend

	fmt.Println(vars)
	// Output:
	// {"refreshes": 2, "stats": {"adopted":0,"failures":0,"refreshes":2,"rejected":1,"save_failures":0}, "tokens_rejected": 1}
}

// get sends a GET request to url and prints what went wrong, if anything.
func get(client *http.Client, url string) {
	resp, err := client.Get(url)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Println(resp.Status)
	}
}
