package xoauth2_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
	"github.com/tokenkit/bearer/xoauth2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// This example hands the tokens of a bearer.Source, which refreshes and
// persists them, to an x/oauth2 client.
func ExampleTokenSource() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()

	src := bearer.NewSource(bearer.Config{
		TokenURL:     srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
	}, bearer.NewMemoryStore(&bearer.Token{
		AccessToken:  g.AccessToken,
		RefreshToken: g.RefreshToken,
		Expiry:       time.Now().Add(-time.Minute), // expired: the first request refreshes
	}))
	defer src.Close()

	ctx := context.Background()
	client := oauth2.NewClient(ctx, xoauth2.TokenSource(ctx, src))
	defer client.CloseIdleConnections()
	resp, err := client.Get(srv.APIURL() + "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	fmt.Println("refreshes:", srv.Stats().Refreshes)
	// Output:
	// 200 OK
	// refreshes: 1
}

// This example gives the tokens of an x/oauth2 clientcredentials.Config to
// a bearer.Transport.
func ExampleFromOAuth2() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()

	cc := clientcredentials.Config{
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		TokenURL:     srv.TokenURL(),
		AuthStyle:    oauth2.AuthStyleInParams,
	}
	ctx := context.Background()
	client := &http.Client{Transport: &bearer.Transport{Source: xoauth2.FromOAuth2(cc.TokenSource(ctx))}}
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
