package xoauth2

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"golang.org/x/oauth2"
)

func TestToOAuth2(t *testing.T) {
	expiry := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		in       *bearer.Token
		wantInfo any
	}{
		{
			name: "all fields",
			in: &bearer.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt",
				Expiry: expiry, RefreshExpiry: expiry.Add(time.Hour), Info: json.RawMessage(`{"family":"f1"}`)},
			wantInfo: map[string]any{"family": "f1"},
		},
		{name: "no info", in: &bearer.Token{AccessToken: "at"}},
		{name: "broken info", in: &bearer.Token{AccessToken: "at", Info: json.RawMessage(`{`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toOAuth2(tt.in)
			if got.AccessToken != tt.in.AccessToken || got.TokenType != tt.in.TokenType ||
				got.RefreshToken != "" || !got.Expiry.Equal(tt.in.Expiry) {
				t.Errorf("toOAuth2() = %+v, want the fields of %+v", got, tt.in)
			}
			gotInfo, _ := json.Marshal(got.Extra(infoKey))
			wantInfo, _ := json.Marshal(tt.wantInfo)
			if string(gotInfo) != string(wantInfo) {
				t.Errorf(`Extra("info") = %s, want %s`, gotInfo, wantInfo)
			}
		})
	}
}

func TestFromOAuth2Token(t *testing.T) {
	expiry := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	base := &oauth2.Token{AccessToken: "at", TokenType: "bearer", RefreshToken: "rt", Expiry: expiry}
	tests := []struct {
		name     string
		in       *oauth2.Token
		wantInfo string
	}{
		{name: "no extra", in: base},
		{name: "json response", in: base.WithExtra(map[string]any{"info": map[string]any{"family": "f1"}}), wantInfo: `{"family":"f1"}`},
		{name: "form response", in: base.WithExtra(url.Values{"info": {`{"family":"f1"}`}}), wantInfo: `{"family":"f1"}`},
		{name: "form response, plain string", in: base.WithExtra(url.Values{"info": {"hello"}}), wantInfo: `"hello"`},
		{name: "other extras", in: base.WithExtra(map[string]any{"scope": "read"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromOAuth2(tt.in)
			if got.AccessToken != "at" || got.TokenType != "bearer" || got.RefreshToken != "rt" ||
				!got.Expiry.Equal(expiry) || !got.RefreshExpiry.IsZero() {
				t.Errorf("fromOAuth2() = %#v, want the fields of the oauth2.Token", *got)
			}
			if string(got.Info) != tt.wantInfo {
				t.Errorf("Info = %s, want %s", got.Info, tt.wantInfo)
			}
		})
	}
}
