package examples_test

import (
	"fmt"

	"github.com/go-resty/resty/v2"
	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// resty sends through an http.RoundTripper like any client: give it a
// bearer.Transport and leave resty's own auth (SetAuthToken) unset.
//
// resty's retries (SetRetryCount, off by default) run above the transport,
// so each of its attempts goes through bearer.Transport; that is cheap,
// since a Source returns a valid token with one atomic load, and a 401 is
// already retried once below, after a refresh. Do not add 401 to resty's
// retry conditions.
func Example_resty() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	src, _ := newSource(srv, bearer.Config{})
	defer src.Close()

	client := resty.New().SetTransport(&bearer.Transport{
		Source: src,
		Base:   srv.Client().Transport, // nil means http.DefaultTransport
	})

	var hello struct {
		OK   bool   `json:"ok"`
		Path string `json:"path"`
	}
	resp, err := client.R().SetResult(&hello).Get(srv.APIURL() + "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status(), hello.OK, hello.Path)

	// The server revokes the access token early: the Transport refreshes
	// and retries once, and resty sees only the success.
	tok, _ := src.Token(resp.Request.Context())
	srv.RevokeAccess(tok.AccessToken)
	resp, err = client.R().SetResult(&hello).Get(srv.APIURL() + "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status(), hello.OK, hello.Path)
	fmt.Println("refreshes:", srv.Stats().Refreshes)
	// Output:
	// 200 OK true /api/hello
	// 200 OK true /api/hello
	// refreshes: 2
}
