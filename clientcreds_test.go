package bearer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

type emptyStore struct{}

func (emptyStore) Load(context.Context) (*Token, error) { return nil, ErrNoToken }
func (emptyStore) Save(context.Context, *Token) error   { return nil }

// A client_credentials Source over an empty plain store, whose fetch is
// refused while another replica saves a token, adopts that token.
func TestClientCredentialsAdoptsAfterRefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		w.Write([]byte(`{"error":"invalid_grant"}`))
	}))
	defer srv.Close()
	st := newSignalStore(emptyStore{})
	st.loads = func(n int) *Token {
		if n >= 2 { // another replica saved meanwhile
			return &Token{AccessToken: "other", Expiry: time.Now().Add(time.Hour)}
		}
		return nil
	}
	src := NewSource(Config{TokenURL: srv.URL, ClientID: "c", ClientSecret: "s", ClientCredentials: true}, st)
	defer src.Close()
	tok, err := src.Token(context.Background())
	if err != nil || tok.AccessToken != "other" {
		t.Errorf("Token() = %v, %v; want the token the other replica saved", tok, err)
	}
}
