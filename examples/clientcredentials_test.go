package examples_test

import (
	"fmt"
	"net/http"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// Machine-to-machine: with ClientCredentials set, the Source fetches its
// tokens with the client_credentials grant, needs no stored token, and
// fetches a new one only when the old one expires.
func Example_clientCredentials() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()

	src := bearer.NewSource(bearer.Config{
		TokenURL:          srv.TokenURL(), // your server's token endpoint
		ClientID:          bearertest.DefaultClientID,
		ClientSecret:      bearertest.DefaultClientSecret,
		ClientCredentials: true,
		Scopes:            []string{"tickets:read"},
		// Encoding: bearer.Form and AuthStyle: bearer.AuthBasic for a
		// plain RFC 6749 server.
	}, nil) // nil: a MemoryStore; nothing needs to survive a restart
	defer src.Close()

	client := &http.Client{Transport: &bearer.Transport{Source: src}}
	defer client.CloseIdleConnections()
	for range 3 {
		resp, err := client.Get(srv.APIURL() + "hello")
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
	}
	fmt.Println("client_credentials grants:", srv.Stats().ClientCredentials)
	// Output:
	// 200 OK
	// 200 OK
	// 200 OK
	// client_credentials grants: 1
}
