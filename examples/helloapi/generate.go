package helloapi

// client.gen.go is oapi-codegen's client for ../api/openapi.yaml, used by
// the examples to show a generated client on bearer.Transport. Run
// `go generate` after changing the spec.
//
//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -generate types,client -package helloapi -o client.gen.go ../api/openapi.yaml
